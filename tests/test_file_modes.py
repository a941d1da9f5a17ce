"""Outputs follow the user's umask, as files made by open() do: a teammate or a web server can read a run."""

import os
import stat

import pytest

from strokeagent.bench.runner import run_bench
from strokeagent.bench.suites import load_bench_suite
from strokeagent.core.store import atomic_write
from strokeagent.runs.api import generate


@pytest.fixture
def umask():
    """Set the process umask for one test, then put the old one back."""
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    yield set_umask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_runs_files_are_0644_under_umask_022(tmp_path, umask):
    umask(0o022)
    out = tmp_path / "run"
    generate("a red apple left of a blue cup", seed=0, out=out)
    files = [
        out / "index.html",
        out / "trajectory.json",
        out / "final.png",
        *sorted((out / "images").glob("*.png")),
    ]
    assert len(files) > 3
    assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o644" for f in files}


def test_a_benchs_files_are_0644_under_umask_022(tmp_path, umask):
    umask(0o022)
    out = tmp_path / "bench"
    run_bench(load_bench_suite("geneval:2:0"), ["ablations/one_shot"], out, seeds=(0,))
    names = ["samples.jsonl", "summary.json", "table.md", "table.csv", "index.html", "suite.jsonl"]
    assert {n: oct(mode(out / n)) for n in names} == {n: "0o644" for n in names}


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o027])
def test_atomic_write_makes_files_as_open_does(tmp_path, umask, mask):
    umask(mask)
    with open(tmp_path / "by-open", "w") as f:
        f.write("x")
    atomic_write(tmp_path / "new", "x")
    atomic_write(tmp_path / "replaced", b"old")
    atomic_write(tmp_path / "replaced", b"new")
    assert mode(tmp_path / "new") == mode(tmp_path / "by-open") == 0o666 & ~mask
    assert mode(tmp_path / "replaced") == 0o666 & ~mask
    assert (tmp_path / "replaced").read_bytes() == b"new"
    # Nothing is left beside the files: no temporary file survives a write.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["by-open", "new", "replaced"]


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write(target, "old")

    with pytest.raises(TypeError):
        atomic_write(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
