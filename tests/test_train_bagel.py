"""BAGEL as a trainee: process samples laid out as the adapter feeds them, and the losses fall.

BAGEL is not on PyPI: the tiny-model tests run only beside a checkout (``STROKEAGENT_BAGEL_CHECKOUT``,
in an environment where it imports: ``benchmarks/bagel_env.sh``, docs/bagel-check.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("datasets")

from strokeagent.errors import TrainError  # noqa: E402
from strokeagent.train.bagel import BagelTrainee  # noqa: E402

CHECKOUT = os.environ.get("STROKEAGENT_BAGEL_CHECKOUT")
needs_checkout = pytest.mark.skipif(
    not CHECKOUT,
    reason="no BAGEL checkout: set STROKEAGENT_BAGEL_CHECKOUT to a clone of ByteDance-Seed/Bagel",
)


def test_bagel_trains_in_bfloat16_and_needs_its_checkout(monkeypatch, tmp_path):
    with pytest.raises(TrainError, match=r'^BAGEL trains in bfloat16 .* not float32; set dtype = "bfloat16"'):
        BagelTrainee.from_pretrained(tmp_path, dtype="float32")
    monkeypatch.delenv("STROKEAGENT_BAGEL_CHECKOUT", raising=False)
    with pytest.raises(TrainError, match=r"^training BAGEL needs its code: .*STROKEAGENT_BAGEL_CHECKOUT"):
        BagelTrainee.from_pretrained(tmp_path, dtype="bfloat16")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny random BAGEL maker (a trainee turns its model to bf16 training mode: one each) and a
    small data set of all three subsets (2 prompts)."""
    from strokeagent.data import build_dataset, load_samples
    from strokeagent.unified.bagel import tiny_inferencer

    def tiny():  # noqa: ANN202
        return tiny_inferencer(Path(CHECKOUT).expanduser())  # type: ignore[arg-type]

    try:
        tiny()
    except ImportError as e:
        pytest.skip(f"the BAGEL checkout at {CHECKOUT} does not import here: {e}")
    root = tmp_path_factory.mktemp("bagel-train")
    build_dataset("geneval:2", root / "data", seed=0)
    return tiny, load_samples(root / "data"), root / "data"


@needs_checkout
def test_a_stream_is_the_context_the_adapter_builds(world):
    """Without its noised copies of painted images, a stream holds exactly the adapter's context."""
    from PIL import Image

    from strokeagent.unified.bagel import BagelModel

    tiny, samples, root = world
    sample = next(s for s in samples if any(seg["kind"] == "image" and seg["loss"] for seg in s["segments"]))
    model = BagelModel.from_inferencer(tiny(), size=64)
    ctx = model.new_context()
    for seg in sample["segments"]:
        if seg["kind"] == "text":
            model.add_text(ctx, seg["text"])
        else:
            with Image.open(root / seg["image"]) as im:
                model.add_image(ctx, im)
    trainee = BagelTrainee.from_inferencer(tiny())
    (stream,) = trainee.streams(sample, root)
    noised = sum(n for n, mode in stream.splits if mode == "noise")
    painted = sum(seg["kind"] == "image" and seg["loss"] for seg in sample["segments"])
    assert noised == painted * (16 + 2)  # 16 latent tokens between the vision markers
    assert len(stream) - noised == ctx.length
    assert max(stream.positions) + 1 == ctx.state.full["ropes"][0]  # BAGEL's rope ids, image = one

    # The modality switch: the <|im_end|> before a painted image is labelled <|vision_start|>.
    ids = trainee.ids
    switches = [i for i, target in enumerate(stream.text_targets) if target == ids["start_of_image"]]
    assert len(switches) == painted
    assert all(stream.ids[i : i + 2] == [ids["eos_token_id"], ids["start_of_image"]] for i in switches)
    assert all(stream.positions[i + 1] == stream.positions[i] + 1 for i in switches)

    # A batch with no image at all still runs (the flow part is a connected zero).
    text_only = {"segments": [seg for seg in sample["segments"] if seg["kind"] == "text"]}
    loss, parts = trainee(trainee.collate([trainee.streams(text_only, root)], max_tokens=2048))
    assert float(parts["image"]) == 0.0 and parts["image_tokens"] == 0 and torch.isfinite(loss)


@needs_checkout
@pytest.mark.slow  # 40-90 s on 2 busy cores: 12 CPU steps of a bf16 model
def test_text_and_flow_losses_fall(world):
    from strokeagent.train.packing import pack

    tiny, samples, root = world
    trainee = BagelTrainee.from_inferencer(tiny())
    trainee.freeze_frozen_parts()
    rows = pack(trainee.all_streams(samples, root), max_tokens=1400)
    batches = [trainee.collate([row], max_tokens=1400) for row in rows]
    assert sum(int(b["painted_images"]) for b in batches) > 0

    def data_loss() -> tuple[float, float]:
        torch.manual_seed(123)  # the same noise and times before and after
        with torch.no_grad():
            parts = [trainee(b)[1] for b in batches]
        return sum(float(p["text"]) for p in parts), sum(float(p["image"]) for p in parts)

    before = data_loss()
    opt = torch.optim.AdamW([p for p in trainee.parameters() if p.requires_grad], lr=3e-3)
    torch.manual_seed(0)
    for step in range(12):
        loss, _ = trainee(batches[step % len(batches)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = data_loss()
    print(f"text {before[0]:.3f} -> {after[0]:.3f}  image {before[1]:.3f} -> {after[1]:.3f}")
    assert after[0] < 0.9 * before[0] and after[1] < before[1], (before, after)
    assert all(p.grad is None for p in trainee.vae.parameters())  # the VAE stays fixed


@needs_checkout
@pytest.mark.slow  # 40-70 s on 2 busy cores: a 4-step training and two loads by path
def test_the_trainer_trains_bagel_and_the_checkpoint_runs_as_a_policy(world, tmp_path):
    import strokeagent
    from strokeagent.core.policy import LoopSpec, Policy
    from strokeagent.train import TrainConfig, train
    from strokeagent.unified.bagel import BagelModel
    from strokeagent.unified.process import ProcessStages

    tiny, _, root = world
    BagelTrainee.from_inferencer(tiny()).save_pretrained(tmp_path / "tiny-bagel")
    cfg = TrainConfig(trainee="bagel", model=str(tmp_path / "tiny-bagel"), data=str(root), out=str(tmp_path / "run"),
                      dtype="bfloat16", steps=4, micro_batch=1, max_tokens=1400, lr=3e-3)  # fmt: skip
    result = train(cfg)
    texts = [h["text"] for h in result.history]
    assert len(texts) == 4 and texts[-1] < texts[0] and any(h["image"] > 0 for h in result.history)
    assert sorted(p.name for p in result.checkpoint.iterdir()) == [
        "ae.safetensors", "bagel.json", "ema.safetensors", "llm_config.json", "special_tokens_map.json",
        "state", "tokenizer.json", "tokenizer_config.json", "trainer.json", "vit_config.json",
    ]  # fmt: skip

    # No conversion: the checkpoint folder is what the bagel backend loads by path.
    model = BagelModel(checkout=CHECKOUT, path=str(result.checkpoint), device="cpu", size=64)  # type: ignore[arg-type]
    stages = ProcessStages(model, max_text_tokens=8, temperature=1.0, image_steps=3, size=64,
                           on_unreadable_inspection="conflict", format={"preamble": ""})  # fmt: skip
    policy = Policy("trained-bagel", LoopSpec(max_steps=1, max_refines=1), dict.fromkeys(("plan", "draft", "reflect", "refine"), stages))
    traj = strokeagent.generate("a red apple", policy=policy, seed=0, out=tmp_path / "gen")
    assert (traj.final_image.width, traj.final_image.height) == (64, 64)
