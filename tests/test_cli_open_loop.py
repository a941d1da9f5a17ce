"""The open loop from the command line: edits at a pause, any stage order in `ablate`, user stages.

Each test runs the real `strokeagent` command (tests/conftest.py's run_cli) on the shapes test doubles
or the sketch policy with a 2-prompt suite, so every one takes seconds.
"""

import json
from pathlib import Path

import pytest
from conftest import TEST_POLICIES, run_cli

from strokeagent.bench.reports import markdown_table
from strokeagent.bench.summary import stage_columns

SHAPES = str(TEST_POLICIES / "shapes.toml")
BUNDLED = Path(__file__).resolve().parents[1] / "policies"

pytestmark = pytest.mark.slow


def _states(run_dir: Path, step: int = 0) -> list[dict]:
    return json.loads((run_dir / "trajectory.json").read_text())["steps"][step]["states"]


def _status(run_dir: Path) -> str:
    return json.loads((run_dir / "run.json").read_text())["status"]


def _one_error_line(r) -> str:  # noqa: ANN001
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


# -- resume with edits -------------------------------------------------------------


def test_edit_plan_at_a_pause_is_recorded_as_the_users_and_the_run_finishes(tmp_path):
    run_dir = tmp_path / "r"
    r = run_cli("run", "three shapes", "--policy", SHAPES, "--out", str(run_dir), "--pause-before", "draft")
    assert r.returncode == 0, r.stderr
    assert "paused after step 1 · plan" in r.stderr
    assert "--edit-plan" in r.stdout  # the pause says how to edit what the plan stage said
    assert _status(run_dir) == "paused"

    edit = "add one big blue square"
    r = run_cli("resume", str(run_dir), "--edit-plan", edit, "--no-pause")
    assert r.returncode == 0, r.stderr
    assert f"plan (your edit)  {edit}" in r.stderr
    assert "done: 3 step(s)" in r.stderr
    assert _status(run_dir) == "finished" and (run_dir / "final.png").is_file()

    states = _states(run_dir)
    users = [s for s in states if s["by"] == "user"]
    assert len(users) == 1 and users[0]["stage"] == "plan"
    assert users[0]["value"]["instruction"] == edit
    # The planner's own plan is kept before the edit; the draft comes after it and drew the edit.
    kinds = [(s["stage"], s["by"]) for s in states]
    assert kinds[:3] == [("plan", "stage"), ("plan", "user"), ("draft", "stage")]
    draft = states[2]["value"]
    assert draft["meta"]["shapes"][-1]["instruction"] == edit


def test_edit_reflection_at_a_pause_before_refine(tmp_path):
    run_dir = tmp_path / "r"
    r = run_cli("run", "p", "--policy", SHAPES, "--out", str(run_dir), "--pause-before", "refine")
    assert r.returncode == 0, r.stderr
    assert "--edit-reflection" in r.stdout
    r = run_cli("resume", str(run_dir), "--edit-reflection", "make shape 1 red", "--no-pause")
    assert r.returncode == 0, r.stderr
    assert "reflect (your edit)  make shape 1 red" in r.stderr
    users = [s for s in _states(run_dir) if s["by"] == "user"]
    assert [(u["stage"], u["value"]["ok"], u["value"]["image_conflicts"]) for u in users] == [
        ("reflect", False, ["make shape 1 red"])
    ]
    assert _status(run_dir) == "finished"


def test_edits_with_nothing_to_edit_are_one_line_and_exit_2(tmp_path):
    before_plan = tmp_path / "before_plan"
    r = run_cli("run", "p", "--policy", SHAPES, "--out", str(before_plan), "--pause-before", "plan")
    assert r.returncode == 0, r.stderr
    line = _one_error_line(run_cli("resume", str(before_plan), "--edit-plan", "draw a circle"))
    assert "nothing to edit" in line

    before_draft = tmp_path / "before_draft"
    r = run_cli("run", "p", "--policy", SHAPES, "--out", str(before_draft), "--pause-before", "draft")
    assert r.returncode == 0, r.stderr
    line = _one_error_line(run_cli("resume", str(before_draft), "--edit-reflection", "ok"))
    assert "--edit-reflection" in line and "no inspection to edit" in line and "--pause-before refine" in line
    line = _one_error_line(run_cli("resume", str(before_draft), "--edit-plan", "   "))
    assert "empty" in line
    # A refused edit changes nothing: the run is still paused, and goes on without an edit.
    assert _status(before_draft) == "paused"
    assert not [s for s in _states(before_draft) if s["by"] == "user"]
    r = run_cli("resume", str(before_draft), "--no-pause")
    assert r.returncode == 0 and "done: 3 step(s)" in r.stderr, r.stderr


# -- a user's stage from the command line --------------------------------------------


def test_a_custom_stage_policy_runs_and_its_progress_names_the_stage(tmp_path):
    run_dir = tmp_path / "r"
    r = run_cli(
        "run", "a red apple left of a blue cup", "--policy", "examples/critique", "--out", str(run_dir)
    )
    assert r.returncode == 0, r.stderr
    progress = [line.split() for line in r.stderr.splitlines() if line.startswith("  step ")]
    assert [p[2] for p in progress[:3]] == ["plan", "critique", "draft"]
    assert "seen in step 1" in r.stderr  # the note the critique stage wrote
    assert "critique" in r.stderr.splitlines()[-1]  # the per-stage times of the summary
    notes = [s for s in _states(run_dir) if s["stage"] == "critique"]
    assert notes and notes[0]["value"]["type"] == "note"
    timings = json.loads((run_dir / "trajectory.json").read_text())["timings"]
    assert "critique" in {t["stage"] for t in timings}


def test_resuming_a_custom_stage_run_needs_trust_code(tmp_path):
    run_dir = tmp_path / "r"
    r = run_cli(
        "run",
        "a red apple",
        "--policy",
        "examples/critique",
        "--out",
        str(run_dir),
        "--pause-before",
        "draft",
    )
    assert r.returncode == 0, r.stderr
    line = _one_error_line(run_cli("resume", str(run_dir)))
    assert "--trust-code" in line
    r = run_cli("resume", str(run_dir), "--trust-code", "--no-pause")
    assert r.returncode == 0, r.stderr
    assert "draft" in r.stderr and _status(run_dir) == "finished"


def test_policies_lists_the_examples():
    r = run_cli("policies")
    assert r.returncode == 0, r.stderr
    for name in (
        "examples/critique",
        "examples/best_of_n",
        "examples/layout_first",
        "examples/two_inspections",
    ):
        assert name in r.stdout
    assert "sketch" in r.stdout and "ablations/full" in r.stdout


# -- ablate over any stage order ------------------------------------------------------


def test_ablate_orders_names_each_order_and_times_a_custom_stage(tmp_path):
    out = tmp_path / "abl"
    orders = "plan,draft; draft,reflect,refine; plan,critique,draft,reflect,refine"
    r = run_cli("ablate", "geneval:2", "--policy", "examples/critique", "--orders", orders, "--out", str(out))
    assert r.returncode == 0, r.stderr
    names = ["plan+draft", "draft+reflect+refine", "plan+critique+draft+reflect+refine"]
    table = (out / "table.md").read_text()
    for name in names:
        assert f"`{name}`" in r.stdout and f"`{name}`" in table
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(p["policy"] for p in summary["policies"]) == sorted(names)
    assert summary["prompts"] == 2
    by_name = {p["policy"]: p for p in summary["policies"]}
    assert "critique" in by_name["plan+critique+draft+reflect+refine"]["seconds_per_image"]
    assert set(by_name["plan+draft"]["seconds_per_image"]) == {"plan", "draft"}
    # The timing table has a column for the user's stage, between the stages it ran between.
    timing_header = table.split("\n\n")[1].splitlines()[0]
    assert "| plan ms | critique ms | draft ms | reflect ms |" in timing_header
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2 * 3
    # The same command again continues the same bench: nothing runs twice.
    again = run_cli(
        "ablate", "geneval:2", "--policy", "examples/critique", "--orders", orders, "--out", str(out)
    )
    assert again.returncode == 0 and "(6 already done)" in again.stderr, again.stderr


@pytest.mark.parametrize(
    ("orders", "message"),
    [
        (
            "plan,draft;draft,refine",
            "--orders draft,refine: policy 'sketch': stage order draft → refine cannot run",
        ),
        (
            "plan,critique,draft",
            "policy 'sketch' has no critique stage; its stages are plan, draft, reflect, refine",
        ),
        ("plan,draft;plan,draft", "gives plan,draft twice"),
        ("reflect,draft", "inspects before anything is drawn"),
        (" ; ", "names no stage order"),
        ("plan,,draft", "an empty stage name"),
    ],
)
def test_an_order_that_cannot_run_is_refused_before_any_work(tmp_path, orders, message):
    out = tmp_path / "abl"
    line = _one_error_line(run_cli("ablate", "geneval:2", "-p", "sketch", "--orders", orders, "--out", str(out)))
    assert message in line
    assert not out.exists()


def test_ablate_policies_folder_compares_every_policy_file(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    sketch = (BUNDLED / "sketch.toml").as_posix()
    (folder / "a.toml").write_text(
        f'extends = "{sketch}"\nname = "just_draft"\n[loop]\norder = ["draft"]\nmax_steps = 1\n'
    )
    (folder / "b.toml").write_text(
        f'extends = "{sketch}"\nname = "planned"\n[loop]\norder = ["plan", "draft"]\n'
    )
    (folder / "notes.txt").write_text("not a policy")
    out = tmp_path / "abl"
    r = run_cli(
        "ablate",
        "geneval:2",
        "--policies",
        str(folder),
        "--orders",
        "draft,reflect,refine",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(p["policy"] for p in summary["policies"]) == [
        "draft+reflect+refine",
        "just_draft",
        "planned",
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "has no policy files" in _one_error_line(run_cli("ablate", "geneval:2", "--policies", str(empty)))
    # --policy alone: that policy's stages under the four bundled ablation loops.
    r = run_cli("ablate", "geneval:2", "--policy", "sketch", "--out", str(tmp_path / "four"))
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "four" / "summary.json").read_text())
    assert sorted(p["policy"] for p in summary["policies"]) == [
        "draft_reflect_refine",
        "full",
        "one_shot",
        "plan_draft",
    ]


# -- the bench's tables are generic over stage names (no subprocess) -----------------------------


def test_stage_columns_merge_the_orders_the_runs_timed():
    assert stage_columns([["draft"], ["plan", "draft"], ["draft", "reflect", "refine"]]) == [
        "plan",
        "draft",
        "reflect",
        "refine",
    ]
    assert stage_columns(
        [["plan", "draft", "check_plan", "check_image", "refine"], ["plan", "critique", "draft"]]
    ) == [
        "plan",
        "critique",
        "draft",
        "check_plan",
        "check_image",
        "refine",
    ]
    assert stage_columns([["a", "b"], ["b", "a"]]) == ["a", "b"]  # orders that disagree: first seen first
    assert stage_columns([]) == []


def test_markdown_table_has_a_column_for_every_stage_timed():
    row = {
        "policy": "two_inspections",
        "loop": "plan → draft → check_plan → check_image ⟲ refine",
        "categories": {"counting": {"accuracy": 1.0}},
        "overall": 1.0,
        "seconds_per_image": {
            "plan": 0.001,
            "draft": 0.01,
            "check_plan": 0.002,
            "check_image": 0.003,
            "refine": 0.004,
        },
        "total_seconds_per_image": 0.02,
        "steps": 2.0,
        "refines": 0.5,
    }
    summary = {"prompts": 1, "seeds": [0], "critic": "sketch", "categories": ["counting"], "policies": [row]}
    table = markdown_table(summary)
    assert "| plan ms | draft ms | check_plan ms | check_image ms | refine ms |" in table
    assert "| 1.0 | 10.0 | 2.0 | 3.0 | 4.0 | 20.0 |" in table
