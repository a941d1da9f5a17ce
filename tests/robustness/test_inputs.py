"""Abuse that must end in one clear line (or a correct run), never a traceback, a stuck folder or a shared one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import strokeagent
from strokeagent.core.policy import load_policy
from strokeagent.errors import PolicyError, PromptError, RunError
from strokeagent.testing import test_policy


def test_a_prompt_that_is_not_valid_text_is_refused_before_any_folder(tmp_path):
    with pytest.raises(PromptError, match="not valid text"):
        strokeagent.generate("apple \udcff", policy=test_policy(), out=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    # From a shell: `strokeagent run $'apple \xff'` (Python turns the byte into a lone surrogate).
    env = {**os.environ, "NO_COLOR": "1"}
    r = subprocess.run([sys.executable.encode(), b"-m", b"strokeagent.cli", b"run", b"apple \xff", b"--out",
                        os.fsencode(tmp_path / "cli")], capture_output=True, env=env, timeout=120)  # fmt: skip
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.decode(errors="replace").strip().splitlines()
    assert line.startswith("error: the prompt is not valid text")
    assert not (tmp_path / "cli").exists()


def test_two_runs_started_together_into_one_folder_never_both_succeed(tmp_path):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    policy = test_policy(order=("draft",))

    def one(out, gate):
        gate.wait()
        try:
            strokeagent.generate("p", policy=policy, out=out)
            return "ran"
        except RunError as e:
            assert "already exists" in str(e), e
            return "refused"

    outcomes = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for i in range(20):
            gate = threading.Barrier(2)
            pair = [pool.submit(one, tmp_path / f"r{i}", gate) for _ in range(2)]
            outcomes.append(sorted(f.result() for f in pair))
    assert outcomes == [["ran", "refused"]] * 20


def test_a_policy_file_nested_too_deeply_is_one_line(tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(deep)
    assert len(str(caught.value).splitlines()) == 1
    utf16 = tmp_path / "utf16.toml"
    utf16.write_text('name = "x"\n', encoding="utf-16")
    with pytest.raises(PolicyError, match="not UTF-8 text"):
        load_policy(utf16)


def test_a_bench_rerun_keeps_a_failed_run_and_resumes_it(tmp_path):
    from strokeagent.bench import load_bench_suite, run_bench
    from strokeagent.core.policy import Policy
    from strokeagent.sketch import SketchDrafter

    class Failing:
        failures = 2  # the first run and the first re-run fail in step 2's draft

        def __init__(self):
            self.hand = SketchDrafter()

        async def draft(self, view, plan):
            if view.step == 1 and Failing.failures:
                Failing.failures -= 1
                raise RuntimeError("the GPU fell over")
            return await self.hand.draft(view, plan)

    base = load_policy("sketch")
    flaky = Policy("flaky", base.loop, {**base.stages, "draft": Failing()})
    suite = [i for i in load_bench_suite("geneval:40") if i.tag == "two_object"][:1]
    with pytest.raises(RunError, match="the GPU fell over"):
        run_bench(suite, [flaky], out=tmp_path / "b")
    (run,) = (p.parent for p in (tmp_path / "b" / "runs").rglob("run.json"))
    kept = {p.name for p in (run / "images").iterdir()}
    assert kept, "the failed run made images before it failed"
    (run / "mine.txt").write_text("a note the user left in the failed run")
    with pytest.raises(RunError, match="the GPU fell over"):
        run_bench(suite, [flaky], out=tmp_path / "b")  # resumed, failed again: nothing deleted
    assert (run / "mine.txt").is_file() and kept <= {p.name for p in (run / "images").iterdir()}
    run_bench(suite, [flaky], out=tmp_path / "b")
    assert (run / "final.png").is_file() and (run / "mine.txt").is_file()
