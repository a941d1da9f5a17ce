"""A tiny random-weight Janus, built offline, running all four stages through transformers' real model code."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers", reason="the janus adapter needs the transformers extra")
torch = pytest.importorskip("torch")

import strokeagent  # noqa: E402
from strokeagent.backends import load_backend  # noqa: E402
from strokeagent.errors import RunError  # noqa: E402
from strokeagent.testing.unified import build_tiny_janus, tiny_process_policy, write_backend  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(backend description, the loaded JanusModel): built and saved once, loaded by path like a real checkpoint."""
    root = tmp_path_factory.mktemp("tiny-janus")
    folder = build_tiny_janus(root / "model")
    backend = write_backend(folder, root / "tiny-janus.toml")
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
    assert (model.native_size, model.num_image_tokens) == (32, 16)
    ctx = model.new_context()
    assert (ctx.length, ctx.usage.prefilled) == (1, 1)  # BOS
    model.add_text(ctx, "<prompt>a cat</prompt>")  # one token per character
    assert (ctx.length, ctx.usage.prefilled) == (23, 23)
    out = model.generate_text(ctx, stop=("</des>",), max_new_tokens=12, seed=1, temperature=1.0)
    assert ctx.usage.generated == len(out.ids) and ctx.length == 23 + len(out.ids)
    assert out.stop_reason in ("stop", "eos", "image", "length")

    before = (ctx.length, ctx.snapshot())
    image = model.generate_image(ctx, seed=2, guidance=5.0)
    assert image.size == (32, 32) and image.mode == "RGB"
    # Painted in a fork: the context is unchanged; the fork's image start and the [BOS, BOI] branch are paid.
    assert ctx.length == before[0]
    assert ctx.usage.since(before[1]).prefilled == 1 + 2 and ctx.usage.since(before[1]).generated == 16
    assert model.generate_image(ctx, seed=2, guidance=5.0).tobytes() == image.tobytes()
    model.add_image(ctx, image)
    assert ctx.length == before[0] + 18  # <begin_of_image>, 16 patches, <end_of_image>

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
    assert [x.stage for x in t[:5]] == ["plan", "draft", "reflect", "refine", "reflect"]
    header = len("<prompt>a red apple</prompt>\n")
    assert (t[0].prefilled_tokens, t[1].prefilled_tokens, t[2].prefilled_tokens) == (1 + header, 3 + 18, 9)
    for x in t:
        if x.stage in ("draft", "refine") and x.generated_tokens:
            assert (x.prefilled_tokens, x.generated_tokens) == (21, 16)
        if x.stage == "plan" and x.step > 0:
            assert x.prefilled_tokens == 0  # the model continues where the last inspection ended
    # What the trajectory records agrees with the timings.
    plan0 = straight.steps[0].plan.meta["process"]
    assert plan0["usage"] == {
        "prefilled": t[0].prefilled_tokens,
        "generated": t[0].generated_tokens,
        "history": 1,  # the BOS of a new context
    }
    assert t[0].generated_tokens == len(plan0["ops"][-1][1])


def test_random_weights_give_malformed_output_that_is_recorded(straight):
    # A random model writes no tags: every plan falls back and says why; inspections are unreadable.
    for step in straight.steps:
        process = step.plan.meta["process"]
        if process.get("closed"):
            assert step.plan.done
            continue
        assert step.plan.instruction == "a red apple"
        assert any("the instruction is missing" in note for note in process["malformed"])
        if process["stop"] == "length":
            assert "the plan did not end within 16 tokens" in process["malformed"]
        assert all(not r.ok for r in step.reflections)  # on_unreadable_inspection = "conflict"
    json.dumps(straight.model_dump(mode="json"))  # everything recorded is plain JSON


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
    assert final_bytes(resumed) == final_bytes(straight)
    assert [r.sha256 for s in resumed.steps for r in s.images] == [
        r.sha256 for s in straight.steps for r in s.images
    ]
    assert [s.plan.meta["process"]["ops"] for s in resumed.steps] == [
        s.plan.meta["process"]["ops"] for s in straight.steps
    ]
    other = strokeagent.generate(
        "a red apple", policy=tiny_process_policy(backend), seed=1, out=tmp_path / "c"
    )
    assert final_bytes(other) != final_bytes(straight)


def test_the_four_stage_tables_build_one_shared_object(tiny):
    policy = tiny_process_policy(tiny[0])
    assert policy.stage("plan") is policy.stage("draft") is policy.stage("reflect") is policy.stage("refine")
    assert policy.stage("plan").model is tiny[1]  # the backend description is loaded once per process


def test_after_a_passed_inspection_the_model_decides_and_a_kill_there_resumes_the_same(tiny, tmp_path):
    # Inspections the random model cannot write count as passed here, so each step ends with the model's
    # own choice after "</inspect>": a new step, the close, or (random weights) neither, which is noted.
    backend, model = tiny
    policy = tiny_process_policy(backend, on_unreadable_inspection="ok")
    straight = strokeagent.generate("a red apple", policy=policy, seed=1, out=tmp_path / "a")
    assert len(straight.steps) == 2 and all(len(s.images) == 1 for s in straight.steps)
    for step, timing in zip(
        straight.steps, [t for t in straight.timings if t.stage == "reflect"], strict=True
    ):
        (reflection,) = step.reflections
        ops = reflection.meta["process"]["ops"]
        # "<inspect>" added; the inspection and the decision generated, each token once, nothing else.
        assert [op for op, _ in ops] == ["text", "ids", "ids"] and ops[0][1] == "<inspect>"
        assert (timing.prefilled_tokens, timing.generated_tokens) == (9, len(ops[1][1]) + len(ops[2][1]))
        decided = reflection.done or "opened" in reflection.meta["process"]
        assert decided or reflection.meta["process"]["malformed"][-1].startswith("after the inspection, ")

    real = model.generate_text
    calls = {"n": 0}

    def dies_at_the_second_plan(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # plan, inspection, decision, then step 2's plan
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    model.generate_text = dies_at_the_second_plan
    try:
        with pytest.raises(RunError, match="killed"):
            strokeagent.generate("a red apple", policy=tiny_process_policy(backend, on_unreadable_inspection="ok"),
                                 seed=1, out=tmp_path / "b")  # fmt: skip
    finally:
        del model.generate_text
    resumed = strokeagent.resume(tmp_path / "b")
    assert [r.sha256 for s in resumed.steps for r in s.images] == [
        r.sha256 for s in straight.steps for r in s.images
    ]
    assert [[r.meta["process"]["ops"] for r in s.reflections] for s in resumed.steps] == [
        [r.meta["process"]["ops"] for r in s.reflections] for s in straight.steps
    ]


def test_concurrent_runs_call_the_model_on_its_own_one_thread(tiny, tmp_path, monkeypatch):
    # CUDA graphs (decode = "compiled") and cuBLAS handles belong to the thread that made them.
    import asyncio

    from conftest import record_threads

    backend, model = tiny
    threads = record_threads(monkeypatch, [(model, n) for n in ("generate_text", "generate_image", "add_image")])

    async def both():
        policy = tiny_process_policy(backend)
        return await asyncio.gather(*(strokeagent.agenerate("a red apple", policy=policy, seed=seed,
                                                            out=tmp_path / str(seed)) for seed in (0, 1)))  # fmt: skip

    first, _ = asyncio.run(both())
    assert set(threads) == {"strokeagent-janus_0"}
    assert len(first.steps) >= 1


def test_every_torch_model_has_its_own_thread_and_process_tiny_does_not():
    from strokeagent.unified import OwnThread
    from strokeagent.unified.bagel import BagelModel
    from strokeagent.unified.emu3 import Emu3Model
    from strokeagent.unified.janus import JanusModel
    from strokeagent.unified.tiny import TinyProcessModel

    assert all(issubclass(m, OwnThread) for m in (JanusModel, Emu3Model, BagelModel))
    assert not issubclass(TinyProcessModel, OwnThread)  # numpy: nothing it warms belongs to a thread
