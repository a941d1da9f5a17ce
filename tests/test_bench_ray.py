"""A bench on Ray (strokeagent.bench.cluster): the same folder and figures as a local bench, and it resumes.

One local Ray instance on two CPUs for the module (seconds to start); each bench on it starts one actor
per policy, which builds its policy from the recorded tables.
"""

import json

import pytest

ray = pytest.importorskip("ray")

from strokeagent.bench import BenchError  # noqa: E402
from strokeagent.bench.cluster import _last_line  # noqa: E402
from strokeagent.bench.runner import run_bench  # noqa: E402
from strokeagent.bench.suites import load_bench_suite  # noqa: E402

POLICIES = ["ablations/one_shot", "ablations/full"]
TIMING = ("stage_seconds", "seconds")
SUMMARY_TIMING = ("seconds_per_image", "total_seconds_per_image")


def _figures(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def _scores(out):
    summary = json.loads((out / "summary.json").read_text())
    for row in summary["policies"]:
        for key in SUMMARY_TIMING:
            row.pop(key)
    return summary


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def test_a_bench_on_ray_equals_the_same_bench_without_it(local_ray, tmp_path):
    items = load_bench_suite("geneval:4:0")
    local = run_bench(items, POLICIES, tmp_path / "local", seeds=(0, 1))
    on_ray = run_bench(items, POLICIES, tmp_path / "ray", seeds=(0, 1), ray=True)
    assert on_ray.ran == 16 and _figures(on_ray.records) == _figures(local.records)
    lines = [json.loads(line) for line in (on_ray.out / "samples.jsonl").read_text().splitlines()]
    assert _figures(lines) == _figures(local.records)
    assert _scores(on_ray.out) == _scores(local.out)
    for r in local.records:
        assert (on_ray.out / r["filename"]).read_bytes() == (local.out / r["filename"]).read_bytes(), r["key"]
        assert json.loads((on_ray.out / "runs" / r["key"] / "run.json").read_text())["status"] == "finished"
    for name in ("bench.json", "suite.jsonl", "table.md", "index.html"):
        assert (on_ray.out / name).is_file()
    assert (on_ray.out / "bench.json").read_text() == (local.out / "bench.json").read_text()


def test_a_killed_ray_bench_continues_where_it_stopped(local_ray, tmp_path):
    items = load_bench_suite("geneval:4:1")
    whole = run_bench(items, POLICIES, tmp_path / "whole", seeds=(0,))

    class Killed(Exception):
        pass

    def kill_after_three(record, done, total):
        if done == 3:
            raise Killed

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        run_bench(items, POLICIES, out, seeds=(0,), concurrency=2, on_sample=kill_after_three, ray=True)
    kept = (out / "samples.jsonl").read_text().splitlines()
    assert 3 <= len(kept) < 8
    finished = {
        key: (out / "runs" / key / "run.json").read_text()
        for key in (json.loads(line)["key"] for line in kept)
    }
    resumed = run_bench(items, POLICIES, out, seeds=(0,), ray=True)
    assert resumed.ran == 8 - len(kept)
    assert _figures(resumed.records) == _figures(whole.records)
    assert _scores(out) == _scores(whole.out)
    for key, text in finished.items():
        assert (out / "runs" / key / "run.json").read_text() == text  # not run again
    for r in whole.records:
        assert (out / r["filename"]).read_bytes() == (whole.out / r["filename"]).read_bytes(), r["key"]
    # Nothing left: no actor is started at all.
    assert run_bench(items, POLICIES, out, seeds=(0,), ray=True).ran == 0


def test_what_cannot_travel_as_tables_is_refused_before_any_work(tmp_path):
    from strokeagent.critics import build_critic

    with pytest.raises(BenchError, match="builds its critic on each worker"):
        run_bench(
            load_bench_suite("geneval:1"), POLICIES, tmp_path / "b", critic=build_critic("sketch"), ray=True
        )
    assert not (tmp_path / "b").exists()


def test_an_actor_that_could_not_start_says_why_in_one_line():
    traceback = (
        "The actor died because of an error raised in its creation task, \x1b[36mray::_BenchActor.__init__()"
        '\x1b[39m\n  File "x.py", line 1, in __init__\nstrokeagent.errors.BenchError: the Ray worker on n1 '
        "cannot see /b/bench.json; a bench on a cluster needs --out on a filesystem every node shares\n"
    )
    assert _last_line(traceback).startswith("the Ray worker on n1 cannot see /b/bench.json")


def test_without_ray_the_option_is_one_error_line_naming_the_extra(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from strokeagent import extras
    from strokeagent.cli.main import app

    real = extras.installed
    monkeypatch.setattr(extras, "installed", lambda m: m != "ray" and real(m))
    for args in (
        ["bench", "geneval:2", "-p", "sketch", "--ray"],
        ["ablate", "geneval:2", "--ray-address", "x:1"],
    ):
        r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b")])
        assert r.exit_code == 2, r.output
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert "needs the 'ray' extra" in lines[0] and "pip install 'strokeagent[ray]'" in lines[0]
        assert not (tmp_path / "b").exists()
