"""The open loop: any named stage in any order, typed hand-offs, samples, edits at a pause, and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TEST_POLICIES, run_cli

import strokeagent
from strokeagent import LoopSpec, Note, Plan, Policy, TrajectoryView
from strokeagent.core.policy import load_policy
from strokeagent.core.state import ImageRef, Trajectory
from strokeagent.errors import PolicyError, RunError
from strokeagent.runs.api import resume
from strokeagent.sketch import SketchDrafter, SketchRefiner, SketchReflector
from strokeagent.sketch.document import SketchDocument
from strokeagent.testing import test_policy

PROMPT = "a photo of two red apples left of a blue cup"


class Critique:  # the README's custom stage, exactly
    async def run(self, view: TrajectoryView) -> Note:
        return Note(text=f"{len(view.steps)} steps so far")


def stages_of(traj: Trajectory) -> list[list[str]]:
    return [[s.stage for s in step.states] for step in traj.steps]


def drawn(traj: Trajectory) -> list[tuple[str, str | None]]:
    doc = SketchDocument.from_meta(traj.final_image.meta)
    return sorted((d.cls, d.color) for d in doc.instances)


# -- any named stage ---------------------------------------------------------------------


def test_a_custom_stage_in_python_gets_a_state_a_timing_and_a_place_in_the_film_strip(tmp_path):
    base = load_policy("sketch")
    policy = Policy("mine", base.loop.model_copy(update={"order": ("plan", "critique", "draft", "reflect", "refine")}),
                    {**base.stages, "critique": Critique()})  # fmt: skip
    assert policy.roles["critique"] == "note"
    traj = strokeagent.generate(PROMPT, policy=policy, seed=0, out=tmp_path / "r")
    assert all(s[:3] == ["plan", "critique", "draft"] for s in stages_of(traj))
    notes = [st.value.text for step in traj.steps for st in step.states if st.stage == "critique"]
    assert notes == [f"{i} steps so far" for i in range(1, len(traj.steps) + 1)]
    assert sum(t.stage == "critique" for t in traj.timings) == len(traj.steps)
    assert "critique" in (tmp_path / "r" / "index.html").read_text()
    # A note changes nothing else: the same images as the policy without it.
    plain = strokeagent.generate(PROMPT, policy=base, seed=0, out=tmp_path / "plain")
    assert plain.final_image.sha256 == traj.final_image.sha256


def test_the_role_of_a_run_stage_comes_from_what_it_returns():
    class Painter:
        async def run(self, view: TrajectoryView) -> strokeagent.Canvas: ...

    class Judge:
        async def run(self, view: TrajectoryView) -> strokeagent.Reflection: ...

    policy = test_policy(order=("plan", "draft"))
    p = Policy("p", LoopSpec(order=("plan", "paint", "judge")), {**policy.stages, "paint": Painter(), "judge": Judge()})
    assert (p.roles["paint"], p.roles["judge"]) == ("draft", "reflect")
    assert p.describe().startswith("plan → paint → judge")


def test_a_stage_that_returns_the_wrong_thing_fails_the_run_in_one_line(tmp_path):
    class Broken:
        async def run(self, view: TrajectoryView) -> strokeagent.Canvas:
            return Note(text="not an image")  # type: ignore[return-value]

    policy = test_policy(order=("plan", "draft"))
    p = Policy("p", LoopSpec(order=("plan", "paint")), {"plan": policy.stage("plan"), "paint": Broken()})
    with pytest.raises(RunError, match="stage paint \\(Broken\\) returned a Note; as a draft stage it must return a Canvas"):
        strokeagent.generate("p", policy=p, out=tmp_path / "r")
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "failed"


def test_the_bundled_custom_stage_example_runs_from_a_policy_file(tmp_path):
    traj = strokeagent.generate(PROMPT, policy="examples/critique", seed=0, out=tmp_path / "r")
    assert all("critique" in s for s in stages_of(traj))


# -- typed hand-offs -----------------------------------------------------------------------


class PlainPlanner:
    """Somebody else's planner: plain plans, no scene graph, no increments."""

    async def plan(self, view: TrajectoryView) -> Plan:
        if view.step == 0:
            return Plan(instruction="Draw two red apples.", description="two red apples")
        return Plan(instruction="Add a blue cup right of the apples.", description=PROMPT.removeprefix("a photo of "),
                    done=True)  # fmt: skip


def test_a_plain_planner_before_the_sketch_stages_is_drawn_inspected_and_fixed(tmp_path):
    # Before: the sketch stages read undocumented Plan.meta keys, so every reflection failed, the refiner changed
    # nothing and the run still ended "done". Now the scene is derived from the plan's description.
    loop = LoopSpec(max_steps=3, max_refines=2)
    stages = {"plan": PlainPlanner(), "draft": SketchDrafter(mistake_rate=0.0), "reflect": SketchReflector(),
              "refine": SketchRefiner()}  # fmt: skip
    traj = strokeagent.generate(PROMPT, policy=Policy("plain", loop, stages), seed=0, out=tmp_path / "r")
    assert len(traj.steps) == 2
    assert [s.reflections[-1].ok for s in traj.steps] == [True, True], [s.reflections[-1].conflicts for s in traj.steps]
    assert drawn(traj) == [("apple", "red"), ("apple", "red"), ("cup", "blue")]
    # With mistakes, what reflect finds, refine fixes.
    stages["draft"] = SketchDrafter(mistake_rate=0.9)
    flawed = strokeagent.generate(PROMPT, policy=Policy("plain", loop, stages), seed=0, out=tmp_path / "f")
    found = [r for s in flawed.steps for r in s.reflections if not r.ok]
    assert found and flawed.steps[-1].reflections[-1].ok
    assert drawn(flawed) == [("apple", "red"), ("apple", "red"), ("cup", "blue")]


def test_a_drafter_that_needs_a_layout_is_refused_at_load_without_a_layout_stage(tmp_path):
    layout_first = load_policy("examples/layout_first")
    assert layout_first.loop.order == ("plan", "layout", "draft", "reflect", "refine")
    policy = tmp_path / "no_layout.toml"
    policy.write_text(
        f'extends = "{strokeagent.core.policy.bundled_policies_dir() / "examples" / "layout_first.toml"}"\n'
        '[loop]\norder = ["plan", "draft", "reflect", "refine"]\n'
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    (line,) = str(caught.value).splitlines()
    assert "stage draft (SketchDrafter) needs a SceneLayout from an earlier stage" in line
    assert "add a stage that gives one before draft" in line


def test_layout_first_draws_into_the_layout_stage_boxes(tmp_path):
    traj = strokeagent.generate(PROMPT, policy="examples/layout_first", seed=0, out=tmp_path / "r")
    first = traj.steps[0].states[1]
    assert first.stage == "layout" and first.value.text.startswith("layout: apple at")
    boxes = first.value.handoffs["layout"]["boxes"]
    doc = SketchDocument.from_meta(traj.steps[0].draft.meta)
    placed = {tuple(d.box) for d in doc.instances}
    assert placed & {tuple(b) for bs in boxes.values() for b in bs}, "the draft uses the layout stage's boxes"
    assert traj.steps[-1].reflections[-1].ok


def test_two_inspections_each_feed_the_refine(tmp_path):
    policy = load_policy("examples/two_inspections")
    assert policy.roles["check_plan"] == policy.roles["check_image"] == "reflect"
    assert policy.describe().startswith("plan → draft → check_plan → check_image ⟲ refine")
    traj = strokeagent.generate(PROMPT, policy=policy.with_loop(max_refines=2), seed=1, out=tmp_path / "r")
    for step in traj.steps:
        names = [s.stage for s in step.states]
        assert names[:4] == ["plan", "draft", "check_plan", "check_image"]
        # Every refine is followed by both inspections again.
        for i, name in enumerate(names):
            if name == "refine":
                assert names[i + 1 : i + 3] == ["check_plan", "check_image"]
    plan_checks = [s.value for step in traj.steps for s in step.states if s.stage == "check_plan"]
    image_checks = [s.value for step in traj.steps for s in step.states if s.stage == "check_image"]
    assert all(not r.image_conflicts for r in plan_checks) and all(not r.prompt_conflicts for r in image_checks)
    assert any(not r.ok for r in image_checks), "seed 1 makes a mistake the image check finds"
    assert traj.steps[-1].reflections[-1].ok


# -- samples and selection -----------------------------------------------------------------


def test_best_of_n_keeps_every_candidate_with_its_score(tmp_path):
    traj = strokeagent.generate(PROMPT, policy="examples/best_of_n", seed=0, out=tmp_path / "r")
    drafts = [s for step in traj.steps for s in step.states if s.stage == "draft"]
    for state in drafts:
        assert len(state.candidates) == 4 and sum(c.chosen for c in state.candidates) == 1
        chosen = next(c for c in state.candidates if c.chosen)
        assert chosen.image.sha256 == state.value.sha256
        assert chosen.score == max(c.score for c in state.candidates)
    assert all(t.samples == 4 for t in traj.timings if t.stage == "draft")
    html = (tmp_path / "r" / "index.html").read_text()
    assert "4 samples, picked by" in html
    # Every candidate's image is kept in the run's store.
    for state in drafts:
        assert all((tmp_path / "r" / "images" / c.image.filename).is_file() for c in state.candidates)


def test_samples_need_a_selector_and_an_image_stage():
    policy = test_policy()
    with pytest.raises(PolicyError, match="samples = 3 needs select"):
        Policy("p", policy.loop, {**policy.stages, "draft": strokeagent.StageSpec(policy.stage("draft"), samples=3)})
    with pytest.raises(PolicyError, match="only an image stage \\(draft, refine\\) draws samples"):
        Policy("p", policy.loop, {**policy.stages,
                                  "plan": strokeagent.StageSpec(policy.stage("plan"), samples=2, select="reflect")})  # fmt: skip
    with pytest.raises(PolicyError, match="select = 'judge' names no reflect stage"):
        Policy("p", policy.loop, {**policy.stages,
                                  "draft": strokeagent.StageSpec(policy.stage("draft"), samples=2, select="judge")})  # fmt: skip


# -- edits at a pause ----------------------------------------------------------------------


def test_an_edited_plan_is_the_users_and_is_what_gets_drawn(tmp_path):
    strokeagent.generate(PROMPT, policy="sketch", seed=0, out=tmp_path / "r", pause_before=("draft",))
    traj = resume(tmp_path / "r", edit_plan="Draw a green cup.", pause=False)
    first = traj.steps[0]
    assert [(s.stage, s.by) for s in first.states[:3]] == [("plan", "stage"), ("plan", "user"), ("draft", "stage")]
    assert first.plan.instruction == "Draw a green cup."
    doc = SketchDocument.from_meta(first.draft.meta)
    assert [(d.cls, d.color) for d in doc.instances] == [("cup", "green")]
    assert "your edit" in (tmp_path / "r" / "index.html").read_text()


def test_an_edited_reflection_routes_the_loop(tmp_path):
    # Seed 2 draws a mistake in one pass that reflect finds; the user says it is fine, so refine does not run.
    policy = load_policy("ablations/draft_reflect_refine")
    straight = strokeagent.generate(PROMPT, policy=policy, seed=2, out=tmp_path / "s")
    assert "refine" in stages_of(straight)[0]
    strokeagent.generate(PROMPT, policy=policy, seed=2, out=tmp_path / "r", pause_before=("refine",))
    traj = resume(tmp_path / "r", edit_reflection="ok", pause=False)
    assert stages_of(traj)[0] == ["plan", "draft", "reflect", "reflect"]
    assert traj.steps[0].states[-1].by == "user" and traj.final_image == traj.steps[0].draft


def test_an_edit_with_nothing_to_edit_is_refused_and_loses_nothing(tmp_path):
    strokeagent.generate(PROMPT, policy="sketch", seed=0, out=tmp_path / "r", pause_before=("draft",))
    advice = r"this step has no inspection to edit yet; pause the run right after one \(e.g. --pause-before refine\)"
    with pytest.raises(RunError, match=advice):
        resume(tmp_path / "r", edit_reflection="the cup is red")
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "paused"
    assert resume(tmp_path / "r", pause=False).final_image is not None


# -- resume runs what ran ------------------------------------------------------------------


def test_a_folder_that_names_code_is_built_only_when_trusted(tmp_path):
    strokeagent.generate(PROMPT, policy="examples/critique", seed=0, out=tmp_path / "r", pause_before=("draft",))
    with pytest.raises(RunError, match="is code named by the run folder, not a registered kind; resume with --trust-code"):
        resume(tmp_path / "r")
    whole = strokeagent.generate(PROMPT, policy="examples/critique", seed=0, out=tmp_path / "whole")
    assert resume(tmp_path / "r", trust_code=True, pause=False).final_image == whole.final_image


def test_an_old_run_folder_with_fixed_slots_still_reads():
    ref = {"sha256": "a" * 64, "width": 8, "height": 8}
    old = {"prompt": "p", "seed": 0, "steps": [{"index": 0, "plan": {"instruction": "i"}, "images": [ref, ref],
                                                 "reflections": [{"ok": False}, {"ok": True}]}]}  # fmt: skip
    traj = Trajectory.model_validate(old)
    assert stages_of(traj) == [["plan", "draft", "reflect", "refine", "reflect"]]
    assert isinstance(traj.steps[0].image, ImageRef) and traj.steps[0].reflections[-1].ok


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11])
def test_kill_9_with_a_custom_stage_and_samples_resumes_to_the_same_bytes(tmp_path, seed):
    policy = str(TEST_POLICIES / "open_slow.toml")
    straight = run_cli("run", "p", "--policy", policy, "--seed", str(seed), "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "strokeagent.cli", "run", "p", "--policy", policy, "--seed", str(seed), "--out", str(run_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and done < 5:  # step 2's custom stage or draft is under way
        time.sleep(0.05)
        try:
            done = len(json.loads((run_dir / "trajectory.json").read_text())["timings"])
        except (OSError, ValueError, KeyError):
            done = 0
        if not (run_dir / "trajectory.json").exists():
            continue
        done = max(done, len(list((run_dir / "images").glob("*.png"))))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "final.png").exists(), "the kill must land before the run ends"
    resumed = run_cli("resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((run_dir / "trajectory.json").read_text())
    b = json.loads((tmp_path / "straight" / "trajectory.json").read_text())
    assert [s["states"] for s in a["steps"]] == [s["states"] for s in b["steps"]]
    assert (run_dir / "final.png").read_bytes() == (tmp_path / "straight" / "final.png").read_bytes()
    assert any(st["candidates"] for s in a["steps"] for st in s["states"])
    assert any(st["stage"] == "note" for s in a["steps"] for st in s["states"])


def test_import_graph_has_no_cycles():
    """Imports point one way: no strokeagent module imports (at module level or in a function) one that imports it."""
    import ast

    root = Path(strokeagent.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("strokeagent"):
                # `from strokeagent.data import alignment` imports the submodule, not the package's own names.
                subs = {f"{node.module}.{a.name}" for a in node.names}
                deps |= {s for s in subs if (root.parent / s.replace(".", "/")).with_suffix(".py").is_file()} or {node.module}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("strokeagent")}
        graph[name] = {d for d in deps if d != name}

    def owner(mod: str) -> str:  # a module, or the package that defines the name
        return mod if mod in graph else mod.rsplit(".", 1)[0]

    state: dict[str, int] = {}
    path: list[str] = []

    def visit(mod: str) -> None:
        state[mod] = 1
        path.append(mod)
        for dep in sorted(graph.get(mod, ())):
            dep = owner(dep)
            if dep in path and dep != mod:
                pytest.fail("import cycle: " + " → ".join([*path[path.index(dep) :], dep]))
            if state.get(dep) is None:
                visit(dep)
        path.pop()
        state[mod] = 2

    for mod in sorted(graph):
        if state.get(mod) is None:
            visit(mod)


def test_a_run_killed_before_its_first_checkpoint_starts_over_to_the_same_bytes(tmp_path):
    whole = strokeagent.generate(PROMPT, policy="sketch", seed=5, out=tmp_path / "whole")
    strokeagent.generate(PROMPT, policy="sketch", seed=5, out=tmp_path / "r", pause_before=("reflect",))
    (tmp_path / "r" / "checkpoints.sqlite").unlink()  # as if killed between run.json and the database
    assert resume(tmp_path / "r", pause=False).final_image == whole.final_image


@pytest.mark.slow
@pytest.mark.parametrize("example", ["examples/best_of_n", "examples/two_inspections", "examples/layout_first",
                                     "examples/critique"])  # fmt: skip
def test_each_example_runs_from_the_cli_deterministic_and_resumable(tmp_path, example):
    args = ("run", "a photo of two red apples left of a blue cup", "--policy", example, "--seed", "3", "-q")
    a = run_cli(*args, "--out", str(tmp_path / "a"))
    b = run_cli(*args, "--out", str(tmp_path / "b"))
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert (tmp_path / "a" / "final.png").read_bytes() == (tmp_path / "b" / "final.png").read_bytes()
    paused = run_cli(*args, "--out", str(tmp_path / "p"), "--pause-before", "draft")
    assert paused.returncode == 0, paused.stderr
    extra = ["--trust-code"] if example == "examples/critique" else []
    done = run_cli("resume", str(tmp_path / "p"), "--no-pause", *extra)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p" / "final.png").read_bytes() == (tmp_path / "a" / "final.png").read_bytes()


def test_the_run_id_is_the_run_folder_name(tmp_path):
    strokeagent.generate("a red apple", policy=test_policy(order=("draft",)), out=tmp_path / "my-run")
    assert json.loads((tmp_path / "my-run" / "run.json").read_text())["run_id"] == "my-run"
    r = run_cli("run", "a red apple", "--policy", str(TEST_POLICIES / "shapes.toml"), "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    assert json.loads((folder / "run.json").read_text())["run_id"] == folder.name


def test_a_selector_stage_must_have_a_reflect_method():
    # The loop asks the selecting stage to reflect on each sample; a run-only inspection cannot, so it is
    # refused when the policy loads rather than failing mid-run.
    class Judge:
        async def run(self, view: TrajectoryView) -> strokeagent.Reflection: ...

    policy = test_policy()
    stages = {**policy.stages, "judge": Judge(), "draft": strokeagent.StageSpec(policy.stage("draft"), samples=2,
                                                                                  select="judge")}  # fmt: skip
    with pytest.raises(PolicyError, match="select = 'judge' names no reflect stage of the policy; use one of reflect"):
        Policy("p", policy.loop, stages)
