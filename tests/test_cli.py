"""The `strokeagent` command end to end, in a subprocess, as a user runs it."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import TEST_POLICIES, run_cli

SHAPES = str(TEST_POLICIES / "shapes.toml")
SLOW = str(TEST_POLICIES / "shapes_slow.toml")

pytestmark = pytest.mark.slow


def test_run_writes_a_run_folder_and_reports_progress(tmp_path):
    r = run_cli("run", "three shapes", "--policy", SHAPES, "--seed", "4", "--out", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    assert "step 3  refine" in r.stderr and "done: 3 step(s)" in r.stderr
    assert f"run folder: {tmp_path / 'r'}" in r.stdout
    traj = json.loads((tmp_path / "r" / "trajectory.json").read_text())
    assert len(traj["steps"]) == 3 and traj["final_image"]["sha256"]
    v = run_cli("view", str(tmp_path / "r"))
    assert v.returncode == 0 and v.stdout.strip() == str((tmp_path / "r" / "index.html").resolve())


def test_kill_9_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    straight = run_cli("run", "p", "--policy", SHAPES, "--seed", "11", "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "strokeagent.cli", "run", "p", "--policy", SLOW, "--seed", "11", "--out", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    images = 0
    while time.monotonic() < deadline and images < 3:  # 3 of the run's 6 images: step 2 is under way
        time.sleep(0.05)
        images = len(list((run_dir / "images").glob("*.png")))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= images < 6, "the kill must land in the middle of the run"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    assert not (run_dir / "final.png").exists()

    resumed = run_cli("resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / "final.png").read_bytes() == (tmp_path / "straight" / "final.png").read_bytes()
    a = json.loads((run_dir / "trajectory.json").read_text())
    b = json.loads((tmp_path / "straight" / "trajectory.json").read_text())
    assert [s["states"] for s in a["steps"]] == [s["states"] for s in b["steps"]]
    assert [t["stage"] for t in a["timings"]] == [t["stage"] for t in b["timings"]]

    again = run_cli("resume", str(run_dir))
    assert again.returncode == 2
    assert again.stderr.strip().startswith("error:") and "already finished" in again.stderr


def test_pause_before_and_resume_from_the_cli(tmp_path):
    r = run_cli("run", "p", "--policy", SHAPES, "--out", str(tmp_path / "r"), "--pause-before", "refine")
    assert r.returncode == 0, r.stderr
    assert "paused" in r.stderr and "strokeagent resume" in r.stdout
    r2 = run_cli("resume", str(tmp_path / "r"), "--no-pause")
    assert r2.returncode == 0 and "done: 3 step(s)" in r2.stderr


def test_policies_lists_the_bundled_ones():
    r = run_cli("policies")
    assert r.returncode == 0
    for name in ("sketch", "ablations/one_shot", "ablations/plan_draft", "ablations/draft_reflect_refine", "ablations/full"):
        assert name in r.stdout


@pytest.mark.parametrize("command", ["run", "resume", "view", "policies", "scene"])
def test_every_command_has_help(command):
    r = run_cli(command, "--help")
    assert r.returncode == 0 and "Usage" in r.stdout


def _bad(tmp_path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[loop\norder = ")
    unknown_stage = tmp_path / "unknown_stage.toml"
    unknown_stage.write_text(f'extends = "{SHAPES}"\n[loop]\norder = ["plan", "paint", "draft"]\n')
    unknown_kind = tmp_path / "unknown_kind.toml"
    unknown_kind.write_text(f'extends = "{SHAPES}"\n[stages.draft]\nkind = "diffusers.magic"\n')
    bad_order = tmp_path / "bad_order.toml"
    bad_order.write_text(f'extends = "{SHAPES}"\n[loop]\norder = ["draft", "refine"]\n')
    bad_option = tmp_path / "bad_option.toml"
    bad_option.write_text(f'extends = "{SHAPES}"\n[stages.draft]\ncolour = "red"\n')
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    (tmp_path / "a_file").write_text("")
    finished = tmp_path / "finished"
    assert run_cli("run", "p", "--policy", SHAPES, "--out", str(finished), "-q").returncode == 0
    return {
        "empty prompt": (["run", "  ", "--policy", SHAPES], "the prompt is empty"),
        "long prompt": (["run", "x" * 2001, "--policy", SHAPES], "over the limit of 2000"),
        "malformed policy": (["run", "p", "--policy", str(bad_toml)], "not valid TOML"),
        "unknown policy": (["run", "p", "--policy", "nonesuch"], "no policy file or bundled policy named 'nonesuch'"),
        "unknown stage": (["run", "p", "--policy", str(unknown_stage)], "the loop runs paint but there is no [stages.paint] table"),
        "unknown kind": (["run", "p", "--policy", str(unknown_kind)], "unknown stage kind 'diffusers.magic'"),
        "impossible order": (["run", "p", "--policy", str(bad_order)], "refine needs an inspection (a reflect stage) right before it"),
        "bad option": (["run", "p", "--policy", str(bad_option)], "bad options for testing.draft"),
        "unwritable out": (["run", "p", "--policy", SHAPES, "--out", str(readonly / "r")], "cannot write the run folder"),
        "out under a file": (["run", "p", "--policy", SHAPES, "--out", str(tmp_path / "a_file" / "r")], "cannot write the run folder"),
        "not a run": (["resume", str(tmp_path)], "is not a strokeagent run"),
        "finished run": (["resume", str(finished)], "already finished"),
        "view not a run": (["view", str(tmp_path / "nope")], "is not a folder"),
        "out is a file": (["run", "p", "--policy", SHAPES, "--out", str(tmp_path / "a_file")], "is a file, not a folder"),
        # click's own checks of options and arguments: one line too, not its box
        "seed not a number": (["run", "p", "--seed", "abc"], "Invalid value for '--seed'"),
        "no prompt": (["run"], "Missing argument 'prompt'; see "),
        "unknown option": (["run", "p", "--sead", "1"], "No such option: --sead"),
        "unknown command": (["rnu", "p"], "No such command 'rnu'. Did you mean 'run'?"),
    }


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; the unwritable case is checked as non-root")
def test_unwritable_output_folder(tmp_path):
    cmd, message = _bad(tmp_path)["unwritable out"]
    r = run_cli(*cmd)
    assert r.returncode == 2 and message in r.stderr


def test_bad_input_gets_one_clear_line_and_exit_2(tmp_path):
    for name, (cmd, message) in _bad(tmp_path).items():
        if name == "unwritable out" and os.geteuid() == 0:
            continue
        r = run_cli(*cmd)
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, r.stderr)
        assert message in lines[0], (name, lines[0])
        assert "Traceback" not in r.stderr


def test_scene_prints_the_graph_as_json_and_as_text():
    r = run_cli("scene", "a photo of two red apples left of a blue cup", "--json")
    assert r.returncode == 0, r.stderr
    graph = json.loads(r.stdout)
    assert [(o["cls"], o["count"], o["color"]) for o in graph["objects"]] == [("apple", 2, "red"), ("cup", 1, "blue")]
    assert graph["relations"] == [{"subject": "o0", "predicate": "left of", "object": "o1"}]
    text = run_cli("scene", "a red blue cup")
    assert "o0: 1 × red cup  (kitchen)" in text.stdout and "dropped: 'blue' contradicts 'red'" in text.stdout
    assert run_cli("scene", " ").returncode == 2


def test_the_default_run_never_imports_torch_diffusers_or_transformers(tmp_path):
    code = (
        "import sys\n"
        "from strokeagent.cli import app\n"
        f"sys.argv = ['strokeagent', 'run', 'a photo of a cat left of a dog', '--out', {str(tmp_path / 'r')!r}, '-q']\n"
        "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'matplotlib') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "r" / "final.png").is_file()


@pytest.mark.parametrize(
    ("prompt", "note"),
    [
        ("a million cats", "'a million' cats capped to 12"),
        ("the the the", "no drawable noun"),
        ("a red blue cup", "'blue' contradicts 'red'"),
        ("a cat left of itself", "self-relation"),
    ],
)
def test_odd_prompts_run_and_the_trajectory_says_what_was_dropped(prompt, note, tmp_path):
    r = run_cli("run", prompt, "-p", "sketch", "--out", str(tmp_path / "r"))  # the notes are the rule parser's
    assert r.returncode == 0, r.stderr
    assert note in r.stderr  # the summary prints the notes
    traj = json.loads((tmp_path / "r" / "trajectory.json").read_text())
    assert any(note in n for n in traj["notes"]), traj["notes"]
    assert (tmp_path / "r" / "final.png").is_file()
