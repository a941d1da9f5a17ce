"""The process format and ProcessStages through the real loop, on a scripted unified model (no torch)."""

from __future__ import annotations

import pytest

import strokeagent
from strokeagent.core.policy import LoopSpec, Policy
from strokeagent.errors import PolicyError, RunError
from strokeagent.testing.unified import ScriptedUnifiedModel as ScriptedModel
from strokeagent.unified.process import ProcessFormat, ProcessStages, parse_inspection, parse_plan
from strokeagent.unified.protocol import UnifiedModel

FMT = ProcessFormat()


def policy_of(model: ScriptedModel, max_steps: int = 5, max_refines: int = 1, **options) -> Policy:
    stages = ProcessStages(model, max_text_tokens=200, format={"preamble": ""}, **options)
    loop = LoopSpec(max_steps=max_steps, max_refines=max_refines)
    return Policy("scripted-process", loop, dict.fromkeys(("plan", "draft", "reflect", "refine"), stages))


PLAN_1 = ("<ins>draw a red apple</ins><des>a red apple</des>", "stop")
OK = ("<plan_check>ok</plan_check><image_check>ok</image_check></inspect>", "stop")
GREEN = ("<plan_check>ok</plan_check><image_check>the apple is green</image_check></inspect>", "stop")
FIX = ("\n<refine>make the apple red</refine>", "stop")
OPEN = ("\n<ins>", "stop")  # after a passed inspection: a new step...
CLOSE = ("\n</process>", "stop")  # ...or the end
PLAN_2 = ("add a blue cup</ins><des>a red apple and a blue cup</des>", "stop")  # goes on after OPEN
HEADER = "<prompt>a red apple and a blue cup</prompt>\n"


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


def test_the_model_closes_after_an_inspection_and_the_run_ends_with_that_painted_step(tmp_path):
    model = ScriptedModel([PLAN_1, GREEN, FIX, OK, OPEN, PLAN_2, OK, CLOSE])
    policy = policy_of(model)
    traj = strokeagent.generate("a red apple and a blue cup", policy=policy, seed=3, out=tmp_path / "r")
    # Two steps, both painted: no closing step after them.
    assert [s.plan.instruction for s in traj.steps] == ["draw a red apple", "add a blue cup"]
    assert [s.plan.description for s in traj.steps] == ["a red apple", "a red apple and a blue cup"]
    assert [len(s.images) for s in traj.steps] == [2, 1] and model.images == 3 and not model.script
    assert traj.final_image == traj.steps[1].images[0]
    first, last = traj.steps[0].reflections[-1], traj.steps[1].reflections[-1]
    assert traj.steps[0].reflections[0].image_conflicts == ["the apple is green"]
    assert traj.steps[0].reflections[0].corrected_instruction == "make the apple red"
    assert (first.done, first.meta["process"]["opened"]) == (False, OPEN[0])
    assert last.done and last.meta["process"]["closed"] and "opened" not in last.meta["process"]
    assert traj.steps[1].plan.meta["process"]["continued"] == OPEN[0]
    assert not traj.steps[1].plan.done
    assert all(not s.plan.meta["process"]["malformed"] for s in traj.steps)
    assert all(not r.meta["process"]["malformed"] for s in traj.steps for r in s.reflections)
    # Prefill per stage is exactly what the stage added: the header, "<inspect>", an image (4); nothing else.
    # Each token the model wrote was generated once: the opener by the reflect, the rest of the plan after it.
    usage = [(t.stage, t.prefilled_tokens, t.generated_tokens) for t in traj.timings]
    assert usage == [
        ("plan", len(HEADER), len(PLAN_1[0])),
        ("draft", 4, 4),
        ("reflect", len("<inspect>"), len(GREEN[0]) + len(FIX[0])),
        ("refine", 4, 4),
        ("reflect", len("<inspect>"), len(OK[0]) + len(OPEN[0])),
        ("plan", 0, len(PLAN_2[0])),
        ("draft", 4, 4),
        ("reflect", len("<inspect>"), len(OK[0]) + len(CLOSE[0])),
    ]
    # The context holds the whole process once, in the paper's order.
    assert transcript(policy) == (
        HEADER + PLAN_1[0] + "[image]" + "<inspect>" + GREEN[0] + FIX[0] + "[image]" + "<inspect>" + OK[0]
        + OPEN[0] + PLAN_2[0] + "[image]" + "<inspect>" + OK[0] + CLOSE[0]
    )  # fmt: skip


@pytest.mark.parametrize(
    "ending",
    [[OK, ("", "eos")], [("<plan_check>ok</plan_check><image_check>ok</image_check>", "eos")]],
    ids=["after-the-inspection", "inside-the-inspection"],
)
def test_an_end_of_turn_closes_too(ending, tmp_path):
    model = ScriptedModel([PLAN_1, *ending])
    traj = strokeagent.generate("a red apple", policy=policy_of(model), seed=0, out=tmp_path / "r")
    (step,) = traj.steps
    assert step.reflections[0].done and step.reflections[0].meta["process"]["closed"]
    assert model.images == 1 and not model.script


def test_a_close_at_a_plan_still_ends_the_run_with_an_unpainted_closing_step(tmp_path):
    # The model wrote neither an opener nor the close after its inspection; it closes at the next plan.
    model = ScriptedModel([PLAN_1, OK, ("\nhmm", "length"), CLOSE])
    traj = strokeagent.generate("a red apple", policy=policy_of(model), seed=0, out=tmp_path / "r")
    assert traj.steps[0].reflections[0].meta["process"]["malformed"] == [
        "after the inspection, wrote 200 tokens without opening a new step (<ins>) or closing (</process>): "
        "the next plan goes on from there"
    ]
    first, closing = traj.steps
    assert closing.plan.done and closing.plan.meta["process"]["closed"]
    assert closing.images[0].sha256 == first.images[0].sha256 == traj.final_image.sha256
    assert model.images == 1 and not model.script
    assert [(t.stage, t.prefilled_tokens, t.generated_tokens) for t in traj.timings[-3:]] == [
        ("plan", 0, len(CLOSE[0])), ("draft", 0, 0), ("reflect", 0, 0)
    ]  # fmt: skip


def test_a_conflict_left_unrefined_by_the_loop_goes_to_the_next_plan(tmp_path):
    # max_refines = 0: the reflect still writes the corrected instruction (it cannot know no refine follows);
    # the model decides at the next plan. An opener there is a plan as before.
    model = ScriptedModel([PLAN_1, GREEN, FIX, ("\n<ins>" + PLAN_2[0], "stop"), OK, CLOSE])
    traj = strokeagent.generate("p", policy=policy_of(model, max_refines=0), seed=0, out=tmp_path / "r")
    assert [s.plan.instruction for s in traj.steps] == ["draw a red apple", "add a blue cup"]
    assert [len(s.images) for s in traj.steps] == [1, 1] and traj.steps[1].reflections[0].done
    assert "continued" not in traj.steps[1].plan.meta["process"]


def test_an_opener_followed_by_a_close_at_the_plan_is_a_close(tmp_path):
    model = ScriptedModel([PLAN_1, OK, OPEN, ("</process>", "stop")])
    traj = strokeagent.generate("p", policy=policy_of(model), seed=0, out=tmp_path / "r")
    closing = traj.steps[1].plan
    assert (
        closing.done and closing.meta["process"]["closed"] and closing.meta["process"]["continued"] == OPEN[0]
    )
    assert model.images == 1


def test_a_plan_that_closes_after_its_tags_is_painted(tmp_path):
    model = ScriptedModel([PLAN_1, OK, OPEN, (PLAN_2[0] + "</process>", "stop"), OK, CLOSE])
    traj = strokeagent.generate("p", policy=policy_of(model), seed=0, out=tmp_path / "r")
    plan = traj.steps[1].plan
    assert (plan.instruction, plan.done) == ("add a blue cup", False)
    assert plan.meta["process"]["malformed"] == [
        "closed the process inside its plan; painting the plan anyway"
    ]
    assert model.images == 2 and len(traj.steps) == 2


def transcript(policy: Policy) -> str:
    """What the one run's live context holds, images written ``[image]``."""
    (live,) = policy.stage("plan")._live.values()
    return "".join("[image]" if piece.startswith("[image") else piece for piece in live.ctx.state)


def test_malformed_output_is_recorded_not_fatal(tmp_path):
    model = ScriptedModel(
        [
            ("", "eos"),  # step 1: ends before painting anything
            ("<plan_check>ok</plan_check>", "image"),  # an image where the inspection was expected
            OPEN,
            ("add a cup" + "x" * 30, "length"),  # an endless plan
            ("garbage", "length"),  # an unreadable inspection
            ("\n", "image"),  # an image where a new step or the close was expected
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
    assert second.reflections[0].ok and second.reflections[0].meta["process"]["malformed"][-1] == (
        "after the inspection, opened an image without opening a new step (<ins>) or closing (</process>): "
        "the next plan goes on from there"
    )
    assert not second.reflections[0].done and not model.script
    assert len(traj.steps) == 2 and traj.final_image == second.images[0]


def test_an_unreadable_inspection_can_mean_repaint(tmp_path):
    model = ScriptedModel([PLAN_1, ("garbage", "length"), ("no tag", "eos"), OK, CLOSE])
    policy = policy_of(model, on_unreadable_inspection="conflict")
    traj = strokeagent.generate("a red apple", policy=policy, seed=0, out=tmp_path / "r")
    r = traj.steps[0].reflections[0]
    assert not r.ok and r.image_conflicts == ["the inspection was unreadable"]
    assert r.corrected_instruction == "draw a red apple"  # no <refine>: the plan's instruction again
    assert len(traj.steps[0].images) == 2
    assert len(traj.steps) == 1 and traj.steps[0].reflections[-1].done


SCRIPT = [PLAN_1, GREEN, FIX, OK, OPEN, PLAN_2, OK, CLOSE]


def outcome(traj) -> list:
    """Everything a run decided and painted (not the token costs, which a rebuild changes)."""
    return [
        (s.plan.instruction, s.plan.description, s.plan.done, [r.sha256 for r in s.images],
         [(r.ok, r.done, r.conflicts, r.corrected_instruction, r.meta["process"]["ops"]) for r in s.reflections])
        for s in traj.steps
    ]  # fmt: skip


def test_a_killed_run_resumes_by_rebuilding_the_context_from_the_trajectory(tmp_path):
    straight = policy_of(ScriptedModel(SCRIPT))
    a = strokeagent.generate("p", policy=straight, seed=5, out=tmp_path / "a")

    model = ScriptedModel(SCRIPT)
    model.fail_image_at = 2  # the refine of step 1
    with pytest.raises(RunError, match="the painter fell over"):
        strokeagent.generate("p", policy=policy_of(model), seed=5, out=tmp_path / "b")
    model.fail_image_at = None
    fresh = policy_of(model)  # a new process: no live context
    b = strokeagent.resume(tmp_path / "b", policy=fresh)
    assert outcome(b) == outcome(a) and len(b.steps) == 2 and not model.script
    assert transcript(fresh) == transcript(straight)
    # The resumed refine paid for the replay: it prefilled the header, an image and "<inspect>" again.
    refine = [t for t in b.timings if t.stage == "refine"][-1]
    assert refine.prefilled_tokens == len("<prompt>p</prompt>\n") + 4 + len("<inspect>") + 4


def test_a_run_killed_after_the_model_opened_a_step_resumes_from_the_opener(tmp_path):
    straight = policy_of(ScriptedModel(SCRIPT))
    a = strokeagent.generate("p", policy=straight, seed=5, out=tmp_path / "a")
    run = tmp_path / "b"
    with pytest.raises(RunError, match="killed"):  # at step 2's plan: the opener is written, nothing after it
        strokeagent.generate("p", policy=policy_of(ScriptedModel([*SCRIPT[:5], ("killed", "error")])), seed=5,
                             out=run)  # fmt: skip
    last = strokeagent.Trajectory.model_validate_json((run / "trajectory.json").read_text()).steps[-1]
    assert last.reflections[-1].meta["process"]["opened"] == OPEN[0]
    fresh = policy_of(ScriptedModel(SCRIPT[5:]))  # a new process: the context is rebuilt from the run
    b = strokeagent.resume(run, policy=fresh)
    assert outcome(b) == outcome(a) and not fresh.stage("plan").model.script
    plan = next(t for t in b.timings if t.stage == "plan" and t.step == 1)
    # The plan rebuilt the context (the opener included, replayed once), then generated only the rest of it.
    replayed = sum(len(x[0]) for x in (PLAN_1, GREEN, FIX, OK, OPEN))
    assert (plan.prefilled_tokens, plan.generated_tokens) == (
        len("<prompt>p</prompt>\n") + 2 * (4 + len("<inspect>")),
        replayed + len(PLAN_2[0]),
    )
    assert transcript(fresh) == transcript(straight)  # the opener is in the context once


def test_a_paused_run_resumed_in_new_processes_equals_an_uninterrupted_one(tmp_path):
    straight = policy_of(ScriptedModel(SCRIPT))
    a = strokeagent.generate("p", policy=straight, seed=5, out=tmp_path / "a")
    model, run = ScriptedModel(SCRIPT), tmp_path / "b"
    b = strokeagent.generate("p", policy=policy_of(model), seed=5, out=run, pause_before=("draft",))
    pauses = 1
    while b.final_image is None:  # each resume is a new process: a new ProcessStages rebuilds the context
        fresh = policy_of(model)
        b = strokeagent.resume(run, policy=fresh)
        pauses += 1
    assert pauses == 3 and outcome(b) == outcome(a) and not model.script
    assert transcript(fresh) == transcript(straight)
    assert [t.generated_tokens for t in b.timings if t.stage != "draft"] == [
        t.generated_tokens for t in a.timings if t.stage != "draft"
    ]  # only a draft, the first stage after each pause, paid for a rebuild


def test_an_edited_plan_stands_in_the_context_where_the_models_stood(tmp_path):
    """A user's plan at a pause is what the model paints from and writes on from; a step the inspection before
    opened keeps its one opener."""
    model, run = ScriptedModel(SCRIPT), tmp_path / "r"
    strokeagent.generate("p", policy=policy_of(model), seed=5, out=run, pause_before=("draft",))
    strokeagent.resume(run, policy=policy_of(model), edit_plan="draw a green apple")  # step 1; pauses at step 2
    fresh = policy_of(model)  # a new process: the context is rebuilt from the run, edits included
    traj = strokeagent.resume(run, policy=fresh, edit_plan="add a green cup")
    assert traj.final_image is not None and not model.script
    assert [s.plan.instruction for s in traj.steps] == ["draw a green apple", "add a green cup"]
    assert transcript(fresh) == (
        "<prompt>p</prompt>\n<ins>draw a green apple</ins><des>draw a green apple</des>[image]<inspect>"
        + GREEN[0] + FIX[0] + "[image]<inspect>" + OK[0] + OPEN[0]
        + "add a green cup</ins><des>add a green cup</des>[image]<inspect>" + OK[0] + CLOSE[0]
    )  # fmt: skip


def test_an_edited_inspection_stands_in_the_context_where_the_models_stood(tmp_path):
    plan_2 = ("\n<ins>add a blue cup</ins><des>a red apple and a blue cup</des>", "stop")
    model, run = ScriptedModel([PLAN_1, GREEN, FIX, plan_2, OK, CLOSE]), tmp_path / "r"
    strokeagent.generate("p", policy=policy_of(model), seed=5, out=run, pause_before=("refine",))
    fresh = policy_of(model)
    traj = strokeagent.resume(run, policy=fresh, edit_reflection="ok", pause=False)
    assert [len(s.images) for s in traj.steps] == [1, 1] and not model.script  # no refine: the user said ok
    ok = "<plan_check>ok</plan_check><image_check>ok</image_check></inspect>"
    assert transcript(fresh) == (
        "<prompt>p</prompt>\n" + PLAN_1[0] + "[image]<inspect>" + ok + plan_2[0] + "[image]<inspect>" + OK[0]
        + CLOSE[0]
    )  # fmt: skip


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
        "strokeagent.testing.unified; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_concurrent_runs_sharing_one_model_each_record_their_own_usage(tmp_path):
    # Usage comes back with each stage's result: runs sharing the stages object cannot mix their counts up.
    import asyncio

    from strokeagent.testing.unified import StopAwareUnifiedModel

    stages = ProcessStages(StopAwareUnifiedModel(), format={"preamble": ""})
    policy = Policy("shared", LoopSpec(max_steps=2, max_refines=1), dict.fromkeys(("plan", "draft", "reflect", "refine"), stages))
    # As many runs as the stages keep live contexts (more would rebuild evicted ones, and say so in their usage).
    prompts = [f"a red apple{' and more' * i}" for i in range(stages.max_live)]  # different prefills

    def usage(traj):
        return [(t.stage, t.prefilled_tokens, t.generated_tokens) for t in traj.timings]

    alone = [usage(strokeagent.generate(p, policy=policy, seed=i, out=tmp_path / f"a{i}")) for i, p in enumerate(prompts)]

    async def together():
        return await asyncio.gather(*(strokeagent.agenerate(p, policy=policy, seed=i, out=tmp_path / f"b{i}")
                                      for i, p in enumerate(prompts)))  # fmt: skip

    assert [usage(t) for t in asyncio.run(together())] == alone
    assert len({u[0][1] for u in alone}) == len(prompts)  # the first plan's prefill tells the prompts apart
