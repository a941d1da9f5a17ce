"""A bench logged to MLflow (strokeagent.bench.tracking): parameters, figures and reports, read back."""

import json
from pathlib import Path

import pytest

pytest.importorskip("mlflow")

from conftest import run_cli  # noqa: E402

from strokeagent.bench.runner import run_bench  # noqa: E402
from strokeagent.bench.suites import load_bench_suite  # noqa: E402
from strokeagent.bench.tracking import log_bench, tracking_uri  # noqa: E402

POLICIES = ["ablations/one_shot", "ablations/full"]


def _runs(uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("strokeagent-bench")
    runs = client.search_runs([experiment.experiment_id])
    return client, runs


def _artifacts(client, run_id, path=None):
    return sorted(a.path for a in client.list_artifacts(run_id, path))


def test_a_bench_is_logged_with_its_parameters_scores_and_reports(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    result = run_bench(load_bench_suite("geneval:4:0"), POLICIES, tmp_path / "b", seeds=(0, 1))
    uri = (tmp_path / "mlruns").as_uri()
    bench_id = log_bench(result, uri, suite="geneval:4:0")
    client, runs = _runs(uri)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())

    bench = next(r for r in runs if r.info.run_id == bench_id)
    assert bench.data.params["suite"] == "geneval:4:0" and bench.data.params["seeds"] == "[0, 1]"
    assert bench.data.params["critic"] == "auto"
    assert json.loads(bench.data.params["policies"]) == ["one_shot", "full"]
    assert bench.data.params["loop.full"] == next(
        p["loop"] for p in summary["policies"] if p["policy"] == "full"
    )
    for row in summary["policies"]:
        assert bench.data.metrics[f"overall.{row['policy']}"] == pytest.approx(row["overall"])
    assert _artifacts(client, bench_id) == ["chart.png", "summary.json", "table.csv", "table.md"]

    children = {r.data.tags["strokeagent.policy"]: r for r in runs if r.info.run_id != bench_id}
    assert set(children) == {"one_shot", "full"}
    for row in summary["policies"]:
        child = children[row["policy"]]
        assert child.data.tags["mlflow.parentRunId"] == bench_id
        assert child.data.params["loop"] == row["loop"]
        assert child.data.metrics["overall"] == pytest.approx(row["overall"])
        for tag, category in row["categories"].items():
            assert child.data.metrics[f"accuracy.{tag}"] == pytest.approx(category["accuracy"])
        assert _artifacts(client, child.info.run_id, "samples") == ["samples/00000-s0.png"]
        local = client.download_artifacts(child.info.run_id, "samples/00000-s0.png", str(tmp_path))
        first = tmp_path / "b" / "runs" / row["policy"] / "00000-s0" / "final.png"
        assert Path(local).read_bytes() == first.read_bytes()


def test_the_default_store_is_mlruns_in_the_bench_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(None, tmp_path / "b") == (tmp_path / "b" / "mlruns").resolve().as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert tracking_uri(None, tmp_path / "b") == "http://tracking:5000"
    assert tracking_uri("file:///x", tmp_path / "b") == "file:///x"


@pytest.mark.slow
def test_ablate_mlflow_logs_every_order(tmp_path):
    uri = (tmp_path / "mlruns").as_uri()
    out = tmp_path / "b"
    r = run_cli("ablate", "geneval:2", "--orders", "plan,draft;draft", "--out", str(out), "--mlflow", uri)  # --mlflow URI, as the issue writes it
    assert r.returncode == 0, r.stderr
    assert f"mlflow         {uri}" in r.stdout
    client, runs = _runs(uri)
    assert sorted(r.data.tags.get("strokeagent.policy", "") for r in runs) == ["", "draft", "plan+draft"]
    bench = next(r for r in runs if "strokeagent.policy" not in r.data.tags)
    assert {"overall.plan_draft", "overall.draft"} <= set(bench.data.metrics)


def test_without_mlflow_the_option_is_one_error_line_naming_the_extra(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from strokeagent import extras
    from strokeagent.cli.main import app

    real = extras.installed
    monkeypatch.setattr(extras, "installed", lambda m: m != "mlflow" and real(m))
    for args in (
        ["bench", "geneval:2", "-p", "sketch", "--mlflow"],
        ["ablate", "geneval:2", "--mlflow-uri", "x"],
    ):
        r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b")])
        assert r.exit_code == 2, r.output
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert "needs the 'mlflow' extra" in lines[0] and "pip install 'strokeagent[mlflow]'" in lines[0]
        assert not (tmp_path / "b").exists()
