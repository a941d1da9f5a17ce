"""A tiny random-weight Emu3, built offline, running all four stages through transformers' real model code."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("transformers", reason="the emu3 adapter needs the transformers extra")
torch = pytest.importorskip("torch")

import strokeagent  # noqa: E402
from strokeagent.backends import load_backend  # noqa: E402
from strokeagent.errors import PolicyError  # noqa: E402
from strokeagent.testing.emu3 import build_tiny_emu3, write_emu3_backend  # noqa: E402
from strokeagent.testing.unified import tiny_process_policy  # noqa: E402
from strokeagent.unified.emu3 import Emu3Model  # noqa: E402
from strokeagent.unified.process import ProcessStages  # noqa: E402

# What the tiny model's processor writes for a 32 px image: <|image start|> "4*4" <|image token|>,
# 4 rows of 4 codes and an end-of-line, <|extra_201|> <|image end|>.
IMAGE = 1 + 3 + 1 + 4 * 5 + 2
PREFIX = 1 + 3 + 1  # what painting adds to the context's fork, before the grid
GRID = 4 * 5


@pytest.fixture(scope="module")
def emu3(tmp_path_factory):
    """The tiny Emu3 saved once, its backend description, and one run on it (seed 0)."""
    root = tmp_path_factory.mktemp("tiny-emu3")
    backend = write_emu3_backend(build_tiny_emu3(root / "model"), root / "tiny-emu3.toml")
    run = strokeagent.generate("a red apple", policy=tiny_process_policy(backend), seed=0, out=root / "run")
    return SimpleNamespace(backend=backend, model=load_backend(backend), run=run)


def painted(traj) -> list[str]:
    return [ref.sha256 for step in traj.steps for ref in step.images]


def test_context_operations_prefill_only_what_they_add(emu3):
    model = emu3.model
    assert (model.native_size, model.size, model.spatial) == (None, 32, 8)
    ctx = model.new_context()
    assert (ctx.length, ctx.usage.prefilled) == (1, 1)  # BOS
    model.add_text(ctx, "<prompt>a cat</prompt>")  # one token per character
    assert (ctx.length, ctx.usage.prefilled) == (23, 23)
    out = model.generate_text(ctx, stop=("</des>",), max_new_tokens=12, seed=1, temperature=1.0)
    assert ctx.usage.generated == len(out.ids) and ctx.length == 23 + len(out.ids)
    assert not set(out.ids) & set(model.visual.tolist())  # text holds no visual token

    before = (ctx.length, ctx.snapshot())
    image = model.generate_image(ctx, seed=2, guidance=4.0)
    assert image.size == (32, 32) and image.mode == "RGB"
    # Painted in a fork: the context is unchanged; the fork's prefix and the [BOS, prefix] branch are paid.
    assert ctx.length == before[0]
    assert ctx.usage.since(before[1]).prefilled == PREFIX + 1 + PREFIX
    assert ctx.usage.since(before[1]).generated == GRID
    assert model.generate_image(ctx, seed=2, guidance=4.0).tobytes() == image.tobytes()
    assert model.generate_image(ctx, seed=3, guidance=4.0).tobytes() != image.tobytes()
    assert model.generate_image(ctx, seed=2, guidance=4.0, size=16).size == (16, 16)
    with pytest.raises(ValueError, match="multiple of 8px; asked for 30px"):
        model.generate_image(ctx, seed=2, guidance=4.0, size=30)
    model.add_image(ctx, image)
    assert ctx.length == before[0] + IMAGE

    # A fork is independent of its parent (replays are checked on whole runs below).
    fork = model.fork(ctx)
    model.add_text(fork, "more")
    assert (fork.length, ctx.length) == (before[0] + IMAGE + 4, before[0] + IMAGE)
    model.drop(fork)


def test_each_stage_prefills_only_what_it_added(emu3):
    t = emu3.run.timings
    assert {"plan", "draft", "reflect", "refine"} <= {x.stage for x in t}
    assert t[0].stage == "plan" and t[0].prefilled_tokens == 1 + len("<prompt>a red apple</prompt>\n")
    painted = [x for x in t if x.stage in ("draft", "refine") and x.generated_tokens]
    assert len(painted) >= 3
    assert all((x.prefilled_tokens, x.generated_tokens) == (2 * PREFIX + 1 + IMAGE, GRID) for x in painted)
    # Every later stage found the history in the context and prefilled only its own part.
    outputs = [step.plan for step in emu3.run.steps] + [
        r for step in emu3.run.steps for r in step.reflections
    ]
    usages = [o.meta["process"]["usage"] for o in outputs if "usage" in o.meta.get("process", {})]
    later = [u for u in usages if u["history"] > 1]
    assert later and all(u["prefilled"] < u["history"] for u in later)


def test_a_context_rebuilt_at_every_stage_paints_the_same_bytes(emu3, tmp_path):
    # With no live context kept, every stage replays the trajectory (ops, and images from their PNGs).
    policy = tiny_process_policy(emu3.backend, max_steps=1)
    policy.stage("plan").max_live = 0
    rebuilt = strokeagent.generate("a red apple", policy=policy, seed=0, out=tmp_path / "rebuilt")
    step = len(emu3.run.steps[0].images)
    assert painted(rebuilt) == painted(emu3.run)[:step]  # step 1, bit for bit
    assert len(rebuilt.timings) == len([x for x in emu3.run.timings if x.step == 0])
    for live, again in zip(emu3.run.timings[1:], rebuilt.timings[1:], strict=False):
        assert again.prefilled_tokens > live.prefilled_tokens  # each rebuild is paid by its stage


def test_missing_weights_or_a_bad_size_are_refused_in_one_line_when_the_policy_loads(emu3, tmp_path):
    with pytest.raises(
        PolicyError, match="Emu3 paints sides that are a positive multiple of 8px; asked for 30px"
    ):
        Emu3Model(emu3.model.path, size=30)
    greedy = Emu3Model(emu3.model.path, size=16, top_k=1)  # one code to draw from: the seed does not matter
    ctx = greedy.new_context()
    assert greedy.generate_image(ctx, seed=0).tobytes() == greedy.generate_image(ctx, seed=1).tobytes()
    backend = write_emu3_backend(tmp_path / "nowhere", tmp_path / "emu3.toml")
    with pytest.raises(PolicyError) as caught:
        ProcessStages(str(backend))
    (line,) = str(caught.value).splitlines()
    assert line.startswith(f"{backend}: no Emu3 model at {tmp_path}/nowhere (no config.json)")
    assert "hf download BAAI/Emu3-Gen-hf" in line and "set `path`" in line


def test_importing_the_adapter_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, strokeagent.unified.emu3, strokeagent.testing.emu3; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
