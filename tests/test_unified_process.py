"""The process format and ProcessStages through the real loop, on a scripted unified model (no torch)."""

from __future__ import annotations

import pytest
from PIL import Image

import strokeagent
from strokeagent.errors import PolicyError, RunError
from strokeagent.loop import LoopSpec
from strokeagent.policy import Policy
from strokeagent.unified.process import ProcessFormat, ProcessStages, parse_inspection, parse_plan
from strokeagent.unified.protocol import Context, TextOutput, UnifiedModel

FMT = ProcessFormat()


class ScriptedModel:
    """A UnifiedModel whose text is a script; one token per character; images are flat colours by seed.

    The context is the literal transcript, so tests can read what each stage added.
    """

    native_size = 8

    def __init__(self, script: list[tuple[str, str]]) -> None:
        self.script = list(script)  # (text, stop reason); "stop" means the text ends with a stop string
        self.fail_image_at: int | None = None
        self.images = 0

    def new_context(self) -> Context:
        return Context(state=[])

    def add_text(self, ctx: Context, text: str) -> None:
        ctx.state.append(text)
        ctx.length += len(text)
        ctx.usage.prefilled += len(text)

    def add_image(self, ctx: Context, image: Image.Image) -> None:
        ctx.state.append(f"[image {image.getpixel((0, 0))}]")
        ctx.length += 4
        ctx.usage.prefilled += 4

    def add_tokens(self, ctx: Context, ids: tuple[int, ...]) -> None:
        ctx.state.append("".join(map(chr, ids)))
        ctx.length += len(ids)
        ctx.usage.generated += len(ids)

    def generate_text(self, ctx, *, stop, max_new_tokens, seed, temperature) -> TextOutput:
        text, reason = self.script.pop(0)
        text = text[:max_new_tokens]
        self.add_tokens(ctx, tuple(map(ord, text)))
        matched = next((s for s in stop if text.endswith(s)), None)
        if reason == "stop" and matched is None:
            reason = "length"
        return TextOutput(text, tuple(map(ord, text)), reason, matched)  # type: ignore[arg-type]

    def generate_image(self, ctx, *, seed, guidance, steps=None, size=None) -> Image.Image:
        self.images += 1
        if self.images == self.fail_image_at:
            raise RuntimeError("the painter fell over")
        ctx.usage.generated += 4
        return Image.new("RGB", (8, 8), (seed % 256, 7, 7))

    def fork(self, ctx: Context) -> Context:
        return Context(ctx.length, ctx.snapshot(), list(ctx.state))

    def drop(self, ctx: Context) -> None:
        ctx.state = None


def policy_of(model: ScriptedModel, max_steps: int = 5, max_refines: int = 1, **options) -> Policy:
    stages = ProcessStages(model, max_text_tokens=200, format={"preamble": ""}, **options)
    loop = LoopSpec(max_steps=max_steps, max_refines=max_refines)
    return Policy("scripted-process", loop, stages, stages, stages, stages)


PLAN_1 = ("<ins>draw a red apple</ins><des>a red apple</des>", "stop")
OK = ("<plan_check>ok</plan_check><image_check>ok</image_check></inspect>", "stop")
GREEN = ("<plan_check>ok</plan_check><image_check>the apple is green</image_check></inspect>", "stop")
FIX = ("\n<refine>make the apple red</refine>", "stop")
PLAN_2 = ("\n<ins>add a blue cup</ins><des>a red apple and a blue cup</des>", "stop")
CLOSE = ("\n</process>", "stop")


def test_parsers_read_the_tags_and_list_what_is_missing():
    plan = parse_plan(FMT, "noise <ins>draw a cat</ins> <des>a cat", fallback="p")
    assert (plan.instruction, plan.description) == ("draw a cat", "a cat")
    assert plan.meta["process"]["malformed"] == ["<des> never closed with </des>"]
    assert parse_plan(FMT, "just words", fallback="the prompt").instruction == "the prompt"
    r = parse_inspection(FMT, "<plan_check>OK, matches</plan_check><image_check>no cup</image_check>")
    assert (r.ok, r.prompt_conflicts, r.image_conflicts) == (False, [], ["no cup"])
    assert parse_inspection(FMT, "<plan_check>ok</plan_check>").meta["process"]["malformed"] == [
        "no <image_check>: the image check is missing"
    ]
    custom = ProcessFormat.from_table({"ins": ["[I]", "[/I]"], "close": "<END>"})
    assert parse_plan(custom, "[I]x[/I]").instruction == "x"
    with pytest.raises(PolicyError, match="unknown format key 'instructions'"):
        ProcessFormat.from_table({"instructions": ["a", "b"]})


def test_a_well_formed_process_runs_the_loop_and_stops_when_the_model_closes(tmp_path):
    model = ScriptedModel([PLAN_1, GREEN, FIX, OK, PLAN_2, OK, CLOSE])
    traj = strokeagent.generate(
        "a red apple and a blue cup", policy=policy_of(model), seed=3, out=tmp_path / "r"
    )
    assert [s.plan.instruction for s in traj.steps[:2]] == ["draw a red apple", "add a blue cup"]
    assert traj.steps[0].reflections[0].image_conflicts == ["the apple is green"]
    assert traj.steps[0].reflections[0].corrected_instruction == "make the apple red"
    assert [len(s.images) for s in traj.steps] == [2, 1, 1]
    # The model closed at step 3's plan: that step paints nothing and the run ends there.
    closing = traj.steps[2]
    assert closing.plan.done and closing.plan.meta["process"]["closed"]
    assert closing.images[0].sha256 == traj.steps[1].images[0].sha256 == traj.final_image.sha256
    assert model.images == 3 and not model.script
    # Prefill per stage is exactly what the stage added: the header, "<inspect>", an image (4); nothing else.
    header = "<prompt>a red apple and a blue cup</prompt>\n"
    usage = [(t.stage, t.prefilled_tokens, t.generated_tokens) for t in traj.timings]
    assert usage[:5] == [
        ("plan", len(header), len(PLAN_1[0])),
        ("draft", 4, 4),
        ("reflect", len("<inspect>"), len(GREEN[0]) + len(FIX[0])),
        ("refine", 4, 4),
        ("reflect", len("<inspect>"), len(OK[0])),
    ]
    assert usage[5] == ("plan", 0, len(PLAN_2[0]))
    assert usage[-3:] == [("plan", 0, len(CLOSE[0])), ("draft", 0, 0), ("reflect", 0, 0)]
    assert all(not s.plan.meta["process"]["malformed"] for s in traj.steps)


def test_malformed_output_is_recorded_not_fatal(tmp_path):
    model = ScriptedModel(
        [
            ("", "eos"),  # step 1: ends before painting anything
            ("<plan_check>ok</plan_check>", "image"),  # an image where the inspection was expected
            ("<ins>add a cup" + "x" * 30, "length"),  # an endless plan
            ("garbage", "length"),  # an unreadable inspection
        ]
    )
    traj = strokeagent.generate(
        "a red apple", policy=policy_of(model, max_steps=2), seed=0, out=tmp_path / "r"
    )
    first, second = traj.steps
    assert first.plan.instruction == "a red apple" and not first.plan.done
    assert (
        first.plan.meta["process"]["malformed"][-1]
        == "closed before painting anything; painting the prompt instead"
    )
    assert first.reflections[0].ok
    assert (
        "opened an image where the inspection was expected"
        in first.reflections[0].meta["process"]["malformed"]
    )
    assert second.plan.instruction.startswith("add a cup")
    assert "the plan did not end within 200 tokens" in second.plan.meta["process"]["malformed"]
    assert "<ins> never closed with </ins>" in second.plan.meta["process"]["malformed"]
    assert second.plan.meta["process"]["stop"] == "length"
    # on_unreadable_inspection = "ok" (the default): an unreadable inspection keeps the image.
    assert second.reflections[0].ok and second.reflections[0].meta["process"]["malformed"]
    assert len(traj.steps) == 2 and traj.final_image == second.images[0]


def test_an_unreadable_inspection_can_mean_repaint(tmp_path):
    model = ScriptedModel([PLAN_1, ("garbage", "length"), ("no tag", "eos"), OK, CLOSE])
    policy = policy_of(model, on_unreadable_inspection="conflict")
    traj = strokeagent.generate("a red apple", policy=policy, seed=0, out=tmp_path / "r")
    r = traj.steps[0].reflections[0]
    assert not r.ok and r.image_conflicts == ["the inspection was unreadable"]
    assert r.corrected_instruction == "draw a red apple"  # no <refine>: the plan's instruction again
    assert len(traj.steps[0].images) == 2


def test_a_resumed_run_rebuilds_the_context_from_the_trajectory(tmp_path):
    script = [PLAN_1, GREEN, FIX, OK, PLAN_2, OK, CLOSE]
    straight = ScriptedModel(list(script))
    a = strokeagent.generate("p", policy=policy_of(straight), seed=5, out=tmp_path / "a")

    model = ScriptedModel(list(script))
    model.fail_image_at = 2  # the refine of step 1
    policy = policy_of(model)
    with pytest.raises(RunError, match="the painter fell over"):
        strokeagent.generate("p", policy=policy, seed=5, out=tmp_path / "b")
    model.fail_image_at = None
    fresh = policy_of(model)  # a new process: no live context
    b = strokeagent.resume(tmp_path / "b", policy=fresh)
    assert [r.sha256 for s in b.steps for r in s.images] == [r.sha256 for s in a.steps for r in s.images]
    (live,) = fresh.planner._live.values()
    transcript = "".join(live.ctx.state)
    assert transcript.startswith("<prompt>p</prompt>\n" + PLAN_1[0] + "[image (")
    assert transcript.count("[image") == 3 and transcript.endswith(CLOSE[0])
    # The resumed refine paid for the replay: it prefilled the header, an image and "<inspect>" again.
    refine = [t for t in b.timings if t.stage == "refine"][-1]
    assert refine.prefilled_tokens == len("<prompt>p</prompt>\n") + 4 + len("<inspect>") + 4


def test_a_process_stage_needs_a_unified_model():
    with pytest.raises(PolicyError, match="is not a unified model"):
        ProcessStages(object())  # type: ignore[arg-type]
    assert isinstance(ScriptedModel([]), UnifiedModel)


def test_cli_without_weights_says_what_to_configure_in_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/models/Janus-Pro-1B here
    result = cli("run", "a red apple", "--policy", "policies/process.toml", "-o", str(tmp_path / "r"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "backends/janus-pro-1b.toml" in line
    assert f"no Janus model at {tmp_path}/models/Janus-Pro-1B" in line and "set `path`" in line
    assert not (tmp_path / "r").exists()


def test_importing_the_process_policy_and_adapters_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, strokeagent.unified.process, strokeagent.unified.janus, strokeagent.unified.bagel, "
        "strokeagent.testing_unified; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
