"""benchmarks/compile_time.py on the CPU's tiny Janus: what each way of declaring shapes compiles, width by width."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", reason="the benchmark builds a Janus model through transformers")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compile_time.py"


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    # Its own inductor cache folder: a bare machine's, whatever earlier runs here left behind.
    # And its own temporary folder, to see that the model it builds there is removed.
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "OMP_NUM_THREADS": "1",
           "TMPDIR": str(tmp_path / "tmp")}  # fmt: skip
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_each_width_is_timed_and_only_the_specialised_compile_pays_at_every_width(tmp_path):
    done = run("--size", "tiny", "dynamic", "specialised", "--rooms", "8,300", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {line.split(":")[0].strip(): [float(s) for s in re.findall(r"width \d+ ([\d.]+) s", line)]
            for line in done.stdout.splitlines() if "width" in line}  # fmt: skip
    assert re.search(r"dynamic: width 256 [\d.]+ s, width 512 [\d.]+ s$", done.stdout, re.M)
    dynamic, specialised = rows["dynamic"], rows["specialised"]
    # A compile is seconds; two steps of the tiny model without one are milliseconds.
    assert dynamic[0] > 0.5 and dynamic[1] < 0.2
    assert specialised[0] > 0.5 and specialised[1] > 0.5
    assert not list((tmp_path / "tmp").glob("compile-time-*"))  # the model's files (GB at full size) are gone


def test_bad_arguments_are_one_line_and_exit_2(tmp_path):
    for rooms in ("8,x", "8,0"):
        done = run("--rooms", rooms, tmp_path=tmp_path)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1] == (
            f"compile_time.py: error: argument --rooms: '{rooms}': give whole numbers above 0, comma-separated, "
            "e.g. 832,576"
        )
    done = run("fast", tmp_path=tmp_path)
    assert done.returncode == 2 and "unknown variant 'fast'" in done.stderr
