"""The BAGEL adapter. BAGEL is not on PyPI: the tiny-model tests run only beside a checkout.

Set ``STROKEAGENT_BAGEL_CHECKOUT`` to a clone of https://github.com/ByteDance-Seed/Bagel and run
in an environment where it imports (transformers 4.49, torchvision, flash-attn or the CPU
stand-in): ``benchmarks/bagel_env.sh`` builds one; docs/bagel-check.md has the command.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import strokeagent
from strokeagent.errors import PolicyError
from strokeagent.unified.bagel import BagelModel, tiny_inferencer

CHECKOUT = os.environ.get("STROKEAGENT_BAGEL_CHECKOUT")
needs_checkout = pytest.mark.skipif(
    not CHECKOUT,
    reason="no BAGEL checkout: set STROKEAGENT_BAGEL_CHECKOUT to a clone of ByteDance-Seed/Bagel",
)


def test_a_missing_checkout_or_weights_is_one_clear_line(tmp_path):
    with pytest.raises(PolicyError, match=r"no BAGEL checkout at .*missing inferencer.py.*git clone") as e:
        BagelModel(checkout=str(tmp_path / "nowhere"), path=str(tmp_path / "weights"))
    assert "\n" not in str(e.value)
    for name in ("inferencer.py", "modeling/bagel/bagel.py", "data/transforms.py"):
        (tmp_path / "Bagel" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "Bagel" / name).write_text("")
    with pytest.raises(PolicyError, match=r"no BAGEL weights at .*missing llm_config.json.*BAGEL-7B-MoT"):
        BagelModel(checkout=str(tmp_path / "Bagel"), path=str(tmp_path / "weights"))


@pytest.fixture(scope="module")
def model():
    try:
        inferencer = tiny_inferencer(Path(CHECKOUT).expanduser())  # type: ignore[arg-type]
    except ImportError as e:
        pytest.skip(f"the BAGEL checkout at {CHECKOUT} does not import here: {e}")
    return BagelModel.from_inferencer(inferencer, size=64)


@needs_checkout
def test_context_operations_count_bagels_own_tokens(model):
    ctx = model.new_context()
    model.add_text(ctx, "<prompt>a red apple</prompt>")
    text_tokens = len(model.tokenizer.encode("<prompt>a red apple</prompt>")) + 2  # <|im_start|> … <|im_end|>
    assert ctx.length == text_tokens and ctx.usage.prefilled == 2 * text_tokens  # full + image-CFG contexts

    first = model.generate_image(ctx, seed=1, guidance=4.0, steps=3)
    latent_tokens = (64 // model.inferencer.model.latent_downsample) ** 2  # 16: 64 px, 8× VAE, 2×2 patches
    assert first.size == (64, 64) and ctx.usage.generated == latent_tokens
    assert ctx.length == text_tokens  # painted in a fork: the context is unchanged
    assert model.generate_image(ctx, seed=1, guidance=4.0, steps=3).tobytes() == first.tobytes()
    assert model.generate_image(ctx, seed=2, guidance=4.0, steps=3).tobytes() != first.tobytes()

    before = ctx.usage.prefilled
    model.add_image(ctx, first)
    vit_tokens = (56 // 14) ** 2
    assert ctx.usage.prefilled - before == (latent_tokens + 2) + (vit_tokens + 2)  # VAE and ViT, each marked

    # The image's context tokens are one value (BAGEL's VAE samples: the adapter fixes the seed),
    # so a context rebuilt from the same inputs paints the same next image.
    other = model.new_context()
    model.add_text(other, "<prompt>a red apple</prompt>")
    model.generate_image(other, seed=9, guidance=4.0, steps=2)  # moves the global RNG
    model.add_image(other, first)
    again = [model.generate_image(c, seed=3, guidance=4.0, steps=3).tobytes() for c in (ctx, other)]
    assert again[0] == again[1]


@needs_checkout
def test_text_stops_on_a_string_or_at_the_end_of_turn(model):
    import torch

    ctx = model.new_context()
    model.add_text(ctx, "<prompt>a red apple</prompt>")
    out = model.generate_text(ctx, stop=(), max_new_tokens=6, seed=0, temperature=1.0)
    assert out.stop_reason == "length" and len(out.ids) == 6
    length = ctx.length
    fork = model.fork(ctx)
    model.add_text(fork, "<inspect>")
    assert fork.length > length == ctx.length
    again = model.generate_text(ctx, stop=("</des>",), max_new_tokens=6, seed=0, temperature=1.0)
    assert again.ids != out.ids  # the context now holds the first answer

    # A model that always ends its turn: BAGEL drops the end token, the adapter still reports it.
    lm = model.inferencer.model.language_model
    head = lm.lm_head
    ends = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        ends.weight.zero_()
        ends.bias.zero_()
        ends.bias[model.ids["eos_token_id"]] = 10.0
    lm.lm_head = ends
    try:
        before = ctx.usage.generated
        out = model.generate_text(ctx, stop=(), max_new_tokens=6, seed=0, temperature=0.0)
    finally:
        lm.lm_head = head
    assert (out.stop_reason, out.ids, ctx.usage.generated - before) == ("eos", (), 1)


@needs_checkout
@pytest.mark.slow  # 10-30 s on 2 busy cores: two runs of two steps, 3 flow steps per image
def test_a_tiny_bagel_runs_the_four_stages_on_its_kv_cache(model, tmp_path):
    from strokeagent.core.policy import LoopSpec, Policy
    from strokeagent.unified.process import ProcessStages

    stages = ProcessStages(model, max_text_tokens=8, temperature=1.0, image_steps=3, size=64,
                           on_unreadable_inspection="conflict", format={"preamble": ""})  # fmt: skip
    policy = Policy("bagel-tiny", LoopSpec(max_steps=2, max_refines=1), dict.fromkeys(("plan", "draft", "reflect", "refine"), stages))
    a = strokeagent.generate("a red apple", policy=policy, seed=0, out=tmp_path / "a")
    b = strokeagent.generate("a red apple", policy=policy, seed=0, out=tmp_path / "b")
    assert [t.stage for t in a.timings[:4]] == ["plan", "draft", "reflect", "refine"]
    drafts = [t for t in a.timings if t.stage in ("draft", "refine")]
    # Painting generates the 16 latent tokens; adding the image back prefills VAE + ViT, 36 tokens.
    assert drafts and all((t.generated_tokens, t.prefilled_tokens) == (16, 36) for t in drafts)
    assert a.final_image.sha256 == b.final_image.sha256
    assert [(t.prefilled_tokens, t.generated_tokens) for t in a.timings] == [
        (t.prefilled_tokens, t.generated_tokens) for t in b.timings
    ]


@needs_checkout
@pytest.mark.slow  # 30-60 s on 2 busy cores: three runs of a tiny BAGEL loaded by path
def test_a_bagel_backend_loads_by_path_and_a_resumed_run_matches(tmp_path):
    from strokeagent.errors import RunError
    from strokeagent.testing.unified import tiny_process_policy
    from strokeagent.train.bagel import BagelTrainee

    try:
        tiny = tiny_inferencer(Path(CHECKOUT).expanduser())  # type: ignore[arg-type]
    except ImportError as e:
        pytest.skip(f"the BAGEL checkout at {CHECKOUT} does not import here: {e}")
    BagelTrainee.from_inferencer(tiny).save_pretrained(tmp_path / "tiny-bagel")  # BAGEL-7B-MoT's layout
    backend = tmp_path / "tiny-bagel.toml"
    backend.write_text(
        f'kind = "bagel"\ncheckout = "{Path(CHECKOUT).expanduser().as_posix()}"\n'  # type: ignore[arg-type]
        f'path = "{(tmp_path / "tiny-bagel").as_posix()}"\ndevice = "cpu"\nsize = 64\n'
    )
    policy = tiny_process_policy(backend, max_steps=1, image_steps=3)
    straight = strokeagent.generate("a red apple", policy=policy, seed=0, out=tmp_path / "a")

    model = policy.stage("plan").model
    real, calls = model.generate_image, {"n": 0}

    def fails_on_the_refine(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("out of memory")
        return real(*args, **kwargs)

    model.generate_image = fails_on_the_refine
    try:
        with pytest.raises(RunError, match="out of memory"):
            strokeagent.generate("a red apple", policy=policy, seed=0, out=tmp_path / "b")
    finally:
        del model.generate_image
    # resume rebuilds the policy from the run's tables: no live context, a replay of the ops.
    resumed = strokeagent.resume(tmp_path / "b")
    assert resumed.final_image.sha256 == straight.final_image.sha256
    assert [r.sha256 for s in resumed.steps for r in s.images] == [
        r.sha256 for s in straight.steps for r in s.images
    ]
