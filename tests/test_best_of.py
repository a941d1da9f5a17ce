"""Best-of-K: K whole trajectories of one prompt, the best kept by a critic; resumable like a run."""

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli

import strokeagent
from strokeagent.core.policy import bundled_policies_dir
from strokeagent.core.stages import stage_seed
from strokeagent.core.state import StageUsage
from strokeagent.errors import RunError
from strokeagent.runs.best_of import (
    MAX_K,
    abest_of,
    best_of,
    candidate_seed,
    is_best_of,
    resume_best_of,
)
from strokeagent.sketch import SketchDrafter
from strokeagent.testing import test_policy

# One-shot sketch drafts make mistakes, so the K candidates score differently (about 30 ms a run).
PROMPT = "a photo of three cups and two dogs"
POLICY = "ablations/one_shot"
SEED = 3  # its candidates score 0.5, 1.0, 0.5: the choice is not candidate 0


def summary(out):
    return json.loads((out / "best_of.json").read_text())


def without_pauses(info):
    return {k: v for k, v in info.items() if k != "pause_before"}


class CountingDrafter(SketchDrafter):
    """The sketch drafter, reporting a seeded number of denoising steps per draft (as an image model would)."""

    async def draft(self, view, plan):
        canvas = await super().draft(view, plan)
        return dataclasses.replace(canvas, usage=StageUsage(denoising_steps=10 + view.seed % 7))


def test_candidate_seeds_are_derived_stably_from_the_seed_and_the_index():
    assert candidate_seed(5, 2) == stage_seed(5, 0, "best_of", 2) % 2**31
    seeds = [candidate_seed(0, i) for i in range(MAX_K)]
    assert len(set(seeds)) == MAX_K and all(0 <= s < 2**31 for s in seeds)
    assert candidate_seed(0, 0) != 0  # candidate 0 is not a plain run of the seed


def test_best_of_3_runs_3_candidates_and_keeps_the_highest_score(tmp_path):
    out = tmp_path / "bo"
    result = best_of(PROMPT, POLICY, k=3, seed=SEED, out=out)
    info = summary(out)
    assert is_best_of(out) and result.status == info["status"] == "finished"
    assert (info["prompt"], info["seed"], info["k"], info["critic"]) == (PROMPT, SEED, 3, {"kind": "sketch"})
    assert [c["run"] for c in info["candidates"]] == ["k0", "k1", "k2"]
    assert [c["seed"] for c in info["candidates"]] == [candidate_seed(SEED, i) for i in range(3)]
    for c in info["candidates"]:
        run = json.loads((out / c["run"] / "run.json").read_text())
        assert run["status"] == c["status"] == "finished" and run["seed"] == c["seed"]
        assert (out / c["run"] / "final.png").is_file() and (out / c["run"] / "index.html").is_file()
    scores = [c["score"] for c in info["candidates"]]
    assert info["chosen"] == result.chosen == scores.index(max(scores)) == 1
    assert len(set(scores)) > 1, "the candidates should differ, or the choice tests nothing"
    assert (out / "final.png").read_bytes() == (out / "k1" / "final.png").read_bytes()
    assert result.final == out / "final.png" and result.trajectory().final_image.sha256 == info["candidates"][1][
        "final_image"
    ]
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and page.count('class="badge">chosen') == 1
    assert all(f'href="k{i}/index.html"' in page for i in range(3))
    assert "<- chosen" in result.lines()[1] and f"final:      {out / 'final.png'}" in result.lines()


def test_ties_go_to_the_lowest_index(tmp_path):
    result = best_of(PROMPT, POLICY, k=2, seed=1, out=tmp_path / "bo")  # both candidates score 0.75
    assert [c.score for c in result.candidates] == [0.75, 0.75] and result.chosen == 0


def test_total_denoising_steps_are_the_sum_over_all_candidates(tmp_path):
    base = strokeagent.load_policy(POLICY)
    policy = dataclasses.replace(base, stages={**base.stages, "draft": CountingDrafter()})
    result = best_of(PROMPT, policy, k=3, seed=SEED, out=tmp_path / "bo")
    info = summary(tmp_path / "bo")
    runs = [result.trajectory(i).denoising_steps() for i in range(3)]
    assert all(n >= 10 for n in runs) and len(set(runs)) > 1
    assert [c["denoising_steps"] for c in info["candidates"]] == runs
    assert info["denoising_steps"] == result.denoising_steps == sum(runs)


def test_same_inputs_twice_give_the_same_choice_and_the_same_bytes(tmp_path):
    a = best_of(PROMPT, POLICY, k=3, seed=SEED, out=tmp_path / "a")
    b = best_of(PROMPT, POLICY, k=3, seed=SEED, out=tmp_path / "b")
    assert a.chosen == b.chosen
    for name in ("best_of.json", "final.png", "index.html", "k0/final.png", "k1/final.png", "k2/final.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = best_of(PROMPT, POLICY, k=3, seed=SEED + 1, out=tmp_path / "c")
    assert [c.seed for c in other.candidates] != [c.seed for c in a.candidates]


def test_a_paused_best_of_resumes_to_what_an_uninterrupted_one_gives(tmp_path):
    straight = best_of(PROMPT, POLICY, k=3, seed=SEED, out=tmp_path / "s")
    paused = best_of(PROMPT, POLICY, k=3, seed=SEED, out=tmp_path / "p", pause_before=("draft",))
    assert paused.status == "paused" and paused.chosen is None and paused.final is None
    info = summary(tmp_path / "p")
    assert info["status"] == "paused" and info["chosen"] is None and not (tmp_path / "p" / "final.png").exists()
    assert [c["status"] for c in info["candidates"]] == ["paused"] * 3
    assert "continue:   strokeagent resume" in paused.lines()[-1]
    resumed = resume_best_of(tmp_path / "p")
    assert resumed.chosen == straight.chosen
    assert without_pauses(summary(tmp_path / "p")) == without_pauses(summary(tmp_path / "s"))
    assert (tmp_path / "p" / "final.png").read_bytes() == (tmp_path / "s" / "final.png").read_bytes()
    with pytest.raises(RunError, match="already finished"):
        resume_best_of(tmp_path / "p")


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs."""


def test_a_best_of_killed_after_candidate_1_resumes_to_the_same_summary(tmp_path):
    best_of(PROMPT, POLICY, k=3, seed=SEED, out=tmp_path / "s")

    def kill_after_k1(candidate):
        if candidate.run == "k1" and candidate.status == "finished":
            raise Killed

    with pytest.raises(Killed):
        best_of(PROMPT, POLICY, k=3, seed=SEED, out=tmp_path / "r", progress=kill_after_k1)
    info = summary(tmp_path / "r")
    assert info["status"] == "running" and [c["status"] for c in info["candidates"]] == [
        "finished",
        "finished",
        "pending",
    ]
    assert not (tmp_path / "r" / "k2").exists() and not (tmp_path / "r" / "final.png").exists()
    resume_best_of(tmp_path / "r")
    for name in ("best_of.json", "final.png", "index.html"):
        assert (tmp_path / "r" / name).read_bytes() == (tmp_path / "s" / name).read_bytes(), name


def test_resume_handles_every_state_a_kill_can_leave_a_candidate_in(tmp_path):
    straight = tmp_path / "s"
    best_of(PROMPT, POLICY, k=3, seed=SEED, out=straight)
    # k0 finished but not yet in the summary; k1 killed before its first checkpoint; k2 never started.
    out = tmp_path / "r"
    shutil.copytree(straight, out)
    info = summary(out)
    info.update(status="running", chosen=None)
    info["candidates"] = [{**c, "status": "pending", "score": None, "correct": None, "final_image": None,
                           "denoising_steps": 0} for c in info["candidates"]]  # fmt: skip
    (out / "best_of.json").write_text(json.dumps(info))
    for name in ("final.png", "index.html"):
        (out / name).unlink()
    shutil.rmtree(out / "k1")
    (out / "k1" / "images").mkdir(parents=True)
    run = json.loads((straight / "k1" / "run.json").read_text())
    (out / "k1" / "run.json").write_text(json.dumps({**run, "status": "running"}))
    shutil.rmtree(out / "k2")
    resume_best_of(out)
    for name in ("best_of.json", "final.png", "index.html"):
        assert (out / name).read_bytes() == (straight / name).read_bytes(), name
    assert json.loads((out / "k1" / "run.json").read_text())["status"] == "finished"


def test_a_best_of_cancelled_mid_candidate_resumes_to_the_same_summary(tmp_path):
    best_of(PROMPT, POLICY, k=3, seed=SEED, out=tmp_path / "s")

    async def cancel_during_k2():
        started = asyncio.Event()
        task = asyncio.create_task(
            abest_of(PROMPT, POLICY, k=3, seed=SEED, out=tmp_path / "r",
                     progress=lambda c: started.set() if c.run == "k2" and c.status == "running" else None)
        )  # fmt: skip
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_during_k2())
    assert not (tmp_path / "r" / "final.png").exists()
    resume_best_of(tmp_path / "r")
    for name in ("best_of.json", "final.png", "index.html"):
        assert (tmp_path / "r" / name).read_bytes() == (tmp_path / "s" / name).read_bytes(), name


class FlakyDrafter(SketchDrafter):
    """The sketch drafter, failing on candidate 1 while ``broken``."""

    broken = True

    async def draft(self, view, plan):
        if FlakyDrafter.broken and view.trajectory.seed == candidate_seed(SEED, 1):
            raise ConnectionError("the image service went away")
        return await super().draft(view, plan)


def test_a_candidate_that_fails_stops_the_best_of_and_resume_finishes_it(tmp_path):
    base = strokeagent.load_policy(POLICY)
    straight = best_of(PROMPT, base, k=3, seed=SEED, out=tmp_path / "s")
    flaky = dataclasses.replace(base, stages={**base.stages, "draft": FlakyDrafter()})
    FlakyDrafter.broken = True
    with pytest.raises(RunError, match=r"best-of candidate k1: the run stopped in a stage: ConnectionError") as e:
        best_of(PROMPT, flaky, k=3, seed=SEED, out=tmp_path / "r")
    assert "\n" not in str(e.value) and f"strokeagent resume {tmp_path / 'r'}" in str(e.value)
    info = summary(tmp_path / "r")
    assert info["status"] == "failed" and [c["status"] for c in info["candidates"]] == ["finished", "failed", "pending"]
    FlakyDrafter.broken = False
    resumed = resume_best_of(tmp_path / "r", policy=flaky)
    assert resumed.chosen == straight.chosen
    assert (tmp_path / "r" / "final.png").read_bytes() == (tmp_path / "s" / "final.png").read_bytes()
    assert summary(tmp_path / "r")["candidates"] == summary(tmp_path / "s")["candidates"]


def test_a_candidate_resumed_on_its_own_is_scored_by_the_best_of(tmp_path):
    out = tmp_path / "p"
    best_of(PROMPT, POLICY, k=2, seed=SEED, out=out, pause_before=("draft",))
    strokeagent.resume(out / "k1")  # a candidate is an ordinary run
    assert json.loads((out / "k1" / "run.json").read_text())["status"] == "finished"
    result = resume_best_of(out)
    assert result.status == "finished" and all(c.score is not None for c in result.candidates)


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1, True, 2.5])
def test_bad_k_is_refused_in_one_line_before_anything_is_written(k, tmp_path):
    with pytest.raises(RunError, match=f"from 1 to {MAX_K}") as e:
        best_of(PROMPT, POLICY, k=k, out=tmp_path / "bo")
    assert "\n" not in str(e.value) and not (tmp_path / "bo").exists()


def test_an_unknown_critic_is_refused_in_one_line_before_anything_is_written(tmp_path):
    with pytest.raises(RunError, match="unknown critic kind 'nope'") as e:
        best_of(PROMPT, POLICY, k=2, critic="nope", out=tmp_path / "bo")
    assert "\n" not in str(e.value) and not (tmp_path / "bo").exists()
    with pytest.raises(RunError, match="bad options for sketch"):
        best_of(PROMPT, POLICY, k=2, critic={"kind": "sketch", "size": 3}, out=tmp_path / "bo")


def test_a_critic_that_cannot_read_the_policy_s_images_says_so(tmp_path):
    with pytest.raises(RunError, match="the sketch critic cannot score .*k0: the sketch critic reads stroke canvases"):
        best_of("p", test_policy(steps=1), k=2, out=tmp_path / "bo")
    assert summary(tmp_path / "bo")["status"] == "failed"


def test_resume_refuses_what_is_not_a_best_of(tmp_path):
    with pytest.raises(RunError, match="is not a folder"):
        resume_best_of(tmp_path / "nowhere")
    with pytest.raises(RunError, match=r"is not a best-of folder \(no best_of.json\)$"):
        resume_best_of(tmp_path)
    strokeagent.generate("p", policy=test_policy(steps=1), out=tmp_path / "run")
    with pytest.raises(RunError, match="it is a single run"):
        resume_best_of(tmp_path / "run")
    best_of(PROMPT, POLICY, k=2, seed=SEED, out=tmp_path / "bo", pause_before=("draft",))
    info = summary(tmp_path / "bo")
    (tmp_path / "bo" / "best_of.json").write_text(json.dumps({**info, "k": 20}))
    with pytest.raises(RunError, match=f"from 1 to {MAX_K}, got 20"):
        resume_best_of(tmp_path / "bo")
    (tmp_path / "bo" / "best_of.json").write_text(json.dumps({**info, "critic": {"kind": "nope"}}))
    with pytest.raises(RunError, match="unknown critic kind 'nope'"):
        resume_best_of(tmp_path / "bo")
    (tmp_path / "bo" / "best_of.json").write_text("{")
    with pytest.raises(RunError, match="cannot be read"):
        resume_best_of(tmp_path / "bo")


def test_a_folder_s_critic_code_is_built_only_when_trusted(tmp_path):
    out = tmp_path / "bo"
    best_of(PROMPT, POLICY, k=2, seed=SEED, out=out, pause_before=("draft",))
    info = summary(out)
    (out / "best_of.json").write_text(
        json.dumps({**info, "critic": {"kind": "strokeagent.critics.sketch:SketchCritic"}})
    )
    with pytest.raises(RunError, match="--trust-code"):
        resume_best_of(out)
    assert resume_best_of(out, trust_code=True).status == "finished"


def test_the_output_folder_must_be_new(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="already exists and is not empty"):
        best_of(PROMPT, POLICY, k=2, out=tmp_path / "busy")
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["keep.txt"]


# -- the command ----------------------------------------------------------------------------------


def test_cli_run_best_of_prints_each_candidate_and_the_choice(tmp_path):
    out = tmp_path / "bo"
    r = run_cli("run", PROMPT, "-p", POLICY, "--best-of", "3", "--seed", str(SEED), "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["k0", "k1", "k2"]
    assert "score 1.000" in lines[1] and "<- chosen" in lines[1] and "chosen" not in lines[0] + lines[2]
    assert f"final:      {out / 'final.png'}" in lines and f"page:       {out / 'index.html'}" in lines
    assert summary(out)["chosen"] == 1
    assert (out / "final.png").read_bytes() == (out / "k1" / "final.png").read_bytes()
    again = run_cli("resume", str(out))
    assert again.returncode == 2 and again.stderr.startswith("error: the best-of") and "already finished" in again.stderr


def test_cli_resume_continues_a_paused_best_of_and_a_candidate_resumes_alone(tmp_path):
    out = tmp_path / "bo"
    r = run_cli("run", PROMPT, "-p", POLICY, "--best-of", "2", "--seed", str(SEED), "--out", str(out),
                "--pause-before", "draft")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"continue:   strokeagent resume {out}" in r.stdout and summary(out)["status"] == "paused"
    edit = run_cli("resume", str(out), "--edit-plan", "x")
    assert edit.returncode == 2 and "is a best-of; edit one candidate" in edit.stderr
    alone = run_cli("resume", str(out / "k0"))
    assert alone.returncode == 0, alone.stderr
    done = run_cli("resume", str(out))
    assert done.returncode == 0, done.stderr
    assert "<- chosen" in done.stdout and f"final:      {out / 'final.png'}" in done.stdout
    assert summary(out)["status"] == "finished"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--best-of", "0"], "best-of K must be a whole number from 1 to 16, got 0"),
        (["--best-of", "17"], "from 1 to 16, got 17"),
        (["--best-of", "2", "--critic", "nope"], "unknown critic kind 'nope'"),
        (["--critic", "sketch"], "--critic sketch scores the candidates of --best-of K"),
    ],
)
def test_cli_refuses_bad_best_of_options_in_one_line(args, message, tmp_path):
    r = run_cli("run", PROMPT, "-p", POLICY, "--out", str(tmp_path / "bo"), *args)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "bo").exists()


def test_cli_best_of_1_is_a_plain_run(tmp_path):
    r = run_cli("run", PROMPT, "-p", POLICY, "--best-of", "1", "--out", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r" / "run.json").is_file() and not is_best_of(tmp_path / "r")


@pytest.mark.slow
def test_cli_kill_9_mid_best_of_then_resume_equals_an_uninterrupted_one(tmp_path):
    # One-shot sketch drafts after a note stage that takes 0.3 s: a kill lands inside a candidate.
    slow = tmp_path / "slow.toml"
    slow.write_text(
        f'extends = "{bundled_policies_dir() / "ablations" / "one_shot.toml"}"\nname = "slow_one_shot"\n'
        '[loop]\norder = ["note", "draft"]\n[stages.note]\nkind = "testing.note"\ndelay = 0.3\n'
    )
    args = ("run", PROMPT, "-p", str(slow), "--best-of", "3", "--seed", str(SEED), "--out")
    straight = run_cli(*args, str(tmp_path / "s"))
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "strokeagent.cli", *args, str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "k1" / "final.png").exists():
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "k1" / "final.png").exists() and not (out / "final.png").exists()

    resumed = run_cli("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    for name in ("best_of.json", "final.png", "index.html"):
        assert (out / name).read_bytes() == (tmp_path / "s" / name).read_bytes(), name
