"""A tiny random-weight Emu3, built offline, running all four stages through transformers' real model code."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="the emu3 adapter needs the transformers extra")
torch = pytest.importorskip("torch")

import strokeagent  # noqa: E402
from strokeagent.backends import load_backend  # noqa: E402
from strokeagent.errors import PolicyError, RunError  # noqa: E402
from strokeagent.testing_emu3 import build_tiny_emu3, write_emu3_backend  # noqa: E402
from strokeagent.testing_unified import tiny_process_policy  # noqa: E402
from strokeagent.unified.process import ProcessStages  # noqa: E402

# What the tiny model's processor writes for a 32 px image: <|image start|> "4*4" <|image token|>,
# 4 rows of 4 codes and an end-of-line, <|extra_201|> <|image end|>.
IMAGE = 1 + 3 + 1 + 4 * 5 + 2
PREFIX = 1 + 3 + 1  # what painting adds to the context's fork, before the grid
GRID = 4 * 5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(backend description, the loaded Emu3Model): built and saved once, loaded by path like a real checkpoint."""
    root = tmp_path_factory.mktemp("tiny-emu3")
    folder = build_tiny_emu3(root / "model")
    backend = write_emu3_backend(folder, root / "tiny-emu3.toml")
    return backend, load_backend(backend)


@pytest.fixture(scope="module")
def straight(tiny, tmp_path_factory):
    """One uninterrupted run, seed 0, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    return strokeagent.generate("a red apple", policy=tiny_process_policy(tiny[0]), seed=0, out=out)


def final_bytes(traj) -> bytes:
    return strokeagent.ArtifactStore(f"{traj.run_dir}/images").read_bytes(traj.final_image)


def test_context_operations_prefill_only_what_they_add(tiny):
    _, model = tiny
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

    # A replay (add_tokens) rebuilds the same state bit for bit; a fork is independent of its parent.
    again = model.new_context()
    model.add_text(again, "<prompt>a cat</prompt>")
    model.add_tokens(again, out.ids)
    model.add_image(again, image)
    assert torch.equal(again.state.logits, ctx.state.logits)
    fork = model.fork(ctx)
    model.add_text(fork, "more")
    assert fork.length == ctx.length + 4 and not torch.equal(fork.state.logits, ctx.state.logits)
    model.drop(fork)


def test_each_stage_prefills_only_what_it_added(straight):
    t = straight.timings
    assert {"plan", "draft", "reflect", "refine"} <= {x.stage for x in t}
    assert t[0].stage == "plan" and t[0].prefilled_tokens == 1 + len("<prompt>a red apple</prompt>\n")
    painted = [x for x in t if x.stage in ("draft", "refine") and x.generated_tokens]
    assert len(painted) >= 3
    assert all((x.prefilled_tokens, x.generated_tokens) == (2 * PREFIX + 1 + IMAGE, GRID) for x in painted)
    # Every later stage found the history in the context and prefilled only its own part.
    outputs = [step.plan for step in straight.steps] + [
        r for step in straight.steps for r in step.reflections
    ]
    usages = [o.meta["process"]["usage"] for o in outputs if "usage" in o.meta.get("process", {})]
    later = [u for u in usages if u["history"] > 1]
    assert later and all(u["prefilled"] < u["history"] for u in later)


def test_same_seed_same_bytes_and_a_resumed_run_matches(tiny, straight, tmp_path):
    backend, model = tiny
    real = model.generate_image
    calls = {"n": 0}

    def fails_on_the_refine(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("out of memory")
        return real(*args, **kwargs)

    model.generate_image = fails_on_the_refine
    try:
        with pytest.raises(RunError, match="out of memory"):
            strokeagent.generate(
                "a red apple", policy=tiny_process_policy(backend), seed=0, out=tmp_path / "b"
            )
    finally:
        del model.generate_image
    # resume rebuilds the policy from the run's tables: a new ProcessStages, no live context, a replay.
    resumed = strokeagent.resume(tmp_path / "b")
    assert [r.sha256 for s in resumed.steps for r in s.images] == [
        r.sha256 for s in straight.steps for r in s.images
    ]
    assert final_bytes(resumed) == final_bytes(straight)
    other = strokeagent.generate(
        "a red apple", policy=tiny_process_policy(backend, max_steps=1), seed=1, out=tmp_path / "c"
    )
    assert other.final_image.sha256 != straight.steps[0].images[-1].sha256  # the same step, another seed


def test_missing_weights_are_refused_in_one_line_when_the_policy_loads(tmp_path):
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
        "import sys, strokeagent.unified.emu3, strokeagent.testing_emu3; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
