"""The benchmarks refuse a bad argument in one usage line (exit 2) before any work, never with a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

CASES = [
    ("batching.py", ["--requests", "0"], "argument --requests: '0': give a whole number above 0"),
    ("batching.py", ["--size", "60"], "argument --size: '60': give a multiple of 8 (the VAE halves it three times)"),
    ("inspector.py", ["--n", "0"], "argument --n: '0': give a whole number above 0"),
    ("inspector.py", ["--rates", "0.2", "2"], "argument --rates: '2': give a number from 0 to 1"),
    ("sketch_ablation.py", ["--workers", "0"], "argument --workers: '0': give a whole number above 0"),
    ("sketch_ablation.py", ["--mistake-rate", "x"], "argument --mistake-rate: 'x': give a number from 0 to 1"),
    ("train_throughput.py", ["--prompts", "-3"], "argument --prompts: '-3': give a whole number above 0"),
    ("judge_accuracy.py", ["--step", "0"], "argument --step: '0': give a whole number above 0"),
    ("text_head_calls.py", ["--max-steps", "0"], "argument --max-steps: '0': give a whole number above 0"),
    ("context_reuse.py", ["--device", "tpu"], "argument --device: 'tpu': give cpu or cuda"),
    ("gpu.py", ["--device", "tpu"], "argument --device: 'tpu': give cpu or cuda"),
    ("compile_time.py", ["--device", "tpu"], "argument --device: 'tpu': give cpu or cuda"),
    ("trajectory_gaps.py", ["0", "--tiny"], "argument steps: '0': give a whole number above 0"),
    ("parser_freeform.py", ["--data", "missing.jsonl"],
     "argument --data: missing.jsonl: no such file (a JSON-lines file of prompts and their scenes)"),
]


def refusal(script: str, *args: str) -> str:
    """The last line ``script`` printed when it refused ``args`` (exit 2, no traceback)."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stderr.splitlines()[-1]


@pytest.mark.parametrize(("script", "args", "message"), CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_a_bad_argument_is_one_usage_line(script, args, message):
    assert refusal(script, *args) == f"{script}: error: {message}"


def test_an_unknown_policy_is_one_usage_line_naming_the_bundled_ones():
    last = refusal("judge_accuracy.py", "--policy", "nope")
    assert last.startswith("judge_accuracy.py: error: argument --policy: no policy file or bundled policy named 'nope'")
    assert "ablations/one_shot" in last


@pytest.mark.parametrize("script", ["context_reuse.py", "gpu.py", "compile_time.py"])
def test_cuda_where_torch_sees_no_gpu_is_one_line(script):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert refusal(script, "--device", "cuda") == (
        f"{script}: error: argument --device: cuda: torch sees no GPU here (torch.cuda.is_available() is False)"
    )


def test_trajectory_gaps_at_gpu_size_without_a_gpu_is_one_line():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert refusal("trajectory_gaps.py", "30") == (
        "trajectory_gaps.py: error: torch sees no GPU here (torch.cuda.is_available() is False); "
        "--tiny runs the same code on the CPU"
    )
