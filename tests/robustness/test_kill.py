"""kill -9 at seeded moments: every run that started resumes to the bytes of an uninterrupted run; none is lost.

A subprocess runs `strokeagent run` on the slow shapes policy (0.25 s stages) and is killed with SIGKILL
either at a moment counted from its start (so some kills land before the run folder exists, some while
run.json is new and no checkpoint is written yet) or from when run.json appears. Each killed run is resumed
(from Python with the fast twin of the policy, every third from the CLI with the policy run.json recorded)
and its final.png compared with an uninterrupted run's. ``benchmarks/robustness.py`` does 100 points.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import strokeagent
from strokeagent.core.policy import load_policy

POLICIES = Path(__file__).resolve().parents[1] / "policies"
SLOW, FAST = POLICIES / "shapes_slow.toml", POLICIES / "shapes.toml"
PROMPT = "a red square left of a blue square"


def reference(work: Path, seed: int) -> bytes:
    out = work / f"reference-s{seed}"
    if not (out / "final.png").is_file():
        strokeagent.generate(PROMPT, policy=load_policy(FAST), seed=seed, out=out)
    return (out / "final.png").read_bytes()


def kill_once(run: Path, seed: int, rng: random.Random) -> str:
    """Start a run, SIGKILL it at a seeded moment; where it was when killed."""
    env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "strokeagent.cli", "run", PROMPT, "--policy", str(SLOW), "--out", str(run),
           "--seed", str(seed)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        if rng.random() < 0.3:  # from the start: the import, the folder's first files, the first stages
            deadline = time.monotonic() + rng.uniform(0.0, 3.0)
        else:  # from run.json: the window before the first checkpoint, then any stage
            while not (run / "run.json").exists() and proc.poll() is None:
                time.sleep(0.002)
            deadline = time.monotonic() + rng.choice([0.0, 0.005, 0.02, rng.uniform(0.0, 4.5)])
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.002)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    if finished:
        return "finished before the kill"
    if not (run / "run.json").exists():
        return "killed before run.json"
    return "killed without a checkpoint" if not (run / "checkpoints.sqlite").exists() else "killed mid-run"


def check_kills(n: int, seed: int, work: Path, parallel: int = 3) -> dict[str, Any]:
    """``n`` kill points (``parallel`` at a time); counts by where the kill landed, and the runs lost."""
    work.mkdir(parents=True, exist_ok=True)
    fast = load_policy(FAST)
    wants = {s: reference(work, s) for s in range(4)}

    def one(i: int) -> tuple[str, bool, str | None]:
        rng = random.Random(seed * 100_003 + i)
        run_seed = rng.randrange(4)
        run = work / f"kill{i}"
        where = kill_once(run, run_seed, rng)
        if where == "killed before run.json":
            return (
                where,
                False,
                None,
            )  # nothing was asked yet: the user runs it again; there is no run to lose
        resumed = False
        try:
            if json.loads((run / "run.json").read_text())["status"] != "finished":
                if i % 4 == 3:  # from the CLI, rebuilding the slow policy run.json recorded
                    r = subprocess.run([sys.executable, "-m", "strokeagent.cli", "resume", str(run)],
                                       capture_output=True, text=True, timeout=120)  # fmt: skip
                    assert r.returncode == 0, r.stderr[-500:]
                else:
                    strokeagent.resume(run, policy=fast, pause=False)
                resumed = True
            if (run / "final.png").read_bytes() != wants[run_seed]:
                return where, resumed, f"{run}: {where}: final.png differs from the uninterrupted run's"
        except Exception as e:
            return where, resumed, f"{run}: {where}: {type(e).__name__}: {e}"
        return where, resumed, None

    stats: dict[str, Any] = {"points": n, "resumed": 0, "lost": [], "where": {}}
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for where, resumed, lost in pool.map(one, range(n)):
            stats["where"][where] = stats["where"].get(where, 0) + 1
            stats["resumed"] += resumed
            if lost:
                stats["lost"].append(lost)
    return stats


def test_runs_killed_at_seeded_moments_resume_byte_identical(tmp_path):
    stats = check_kills(6, seed=11, work=tmp_path)
    assert stats["lost"] == [], stats
    assert stats["resumed"] >= 3, stats
