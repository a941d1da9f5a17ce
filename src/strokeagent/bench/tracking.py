"""A finished bench, logged to MLflow; the bench folder stays the source of truth.

    >>> log_bench(result, "file:///tmp/mlruns", suite="geneval:200")   # doctest: +SKIP
    'b1946ac92492d2347c6235b4d2611184'

One MLflow run per bench (named by its folder) holds the bench's parameters
(suite, its digest, rows, seeds, critic, the policies), the overall score of
each policy as ``overall.<policy>``, and the reports as artifacts: table.md,
table.csv, summary.json, and chart.png where it was written. Under it, one
nested run per policy holds that policy's figures (``overall``,
``accuracy.<category>``, ``images_correct``, ``prompts_correct``,
``mean_score``, ``seconds_per_image``, ``steps``, ``refines``), its loop in
words and description as parameters, and the final image of its first sample
(``samples/``). Everything is read from the bench folder, so a bench can be
logged again later (``log_bench`` on a ``BenchResult`` of a finished folder).

``uri``: ``None`` means ``MLFLOW_TRACKING_URI`` if it is set, else a file store
in ``OUT/mlruns`` (``mlflow ui --backend-store-uri OUT/mlruns`` shows it). MLflow 3.x keeps
file stores in maintenance mode and refuses them unless ``MLFLOW_ALLOW_FILE_STORE=true``; a
file store named here (or the default) sets it. A server (``http://...``) or a database
(``sqlite:///mlflow.db``) works as MLflow documents. The
experiment is ``MLFLOW_EXPERIMENT_NAME`` if set, else ``strokeagent-bench``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from strokeagent.errors import BenchError

DEFAULT_EXPERIMENT = "strokeagent-bench"
REPORTS = ("table.md", "table.csv", "summary.json", "chart.png")
#: MLflow keeps parameter values up to this many characters.
PARAM_LIMIT = 500


def tracking_uri(uri: str | None, out: Path) -> str:
    """The URI to log to: ``uri``, else ``MLFLOW_TRACKING_URI``, else ``OUT/mlruns`` as a file store."""
    if uri:
        return uri
    return os.environ.get("MLFLOW_TRACKING_URI") or (Path(out).resolve() / "mlruns").as_uri()


def metric_name(text: str) -> str:
    """A policy or category name as MLflow allows it in a key (``plan+draft`` → ``plan_draft``)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= PARAM_LIMIT else text[: PARAM_LIMIT - 1] + "…"


def policy_metrics(row: dict[str, Any]) -> dict[str, float]:
    """One policy's figures from summary.json, as MLflow metrics."""
    metrics = {f"accuracy.{metric_name(tag)}": c["accuracy"] for tag, c in row["categories"].items()}
    metrics.update({k: float(row[k]) for k in ("overall", "images_correct", "prompts_correct", "mean_score")})
    metrics.update({"seconds_per_image": float(row["total_seconds_per_image"])})
    metrics.update({"steps": float(row["steps"]), "refines": float(row["refines"])})
    metrics.update({f"seconds.{metric_name(s)}": float(v) for s, v in row["seconds_per_image"].items()})
    return metrics


def log_bench(
    result: Any,  # a BenchResult
    uri: str | None = None,
    *,
    suite: str | None = None,
    experiment: str | None = None,
) -> str:
    """Log the bench in ``result.out`` to MLflow; the id of its (parent) run. MLflow's errors: one ``BenchError`` line."""
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(uri, Path(result.out))
    if uri.startswith("file:") or "://" not in uri:
        # A file store asked for by name (the default OUT/mlruns too): newer MLflow refuses it unless told.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        return _log(result, uri, suite, experiment)
    except MlflowException as e:
        raise BenchError(f"MLflow at {uri}: {str(e).strip().splitlines()[0]}") from None


def _log(result: Any, uri: str, suite: str | None, experiment: str | None) -> str:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    out = Path(result.out)
    plan = json.loads((out / "bench.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    client = MlflowClient(tracking_uri=uri)
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(name)

    bench_run = client.create_run(
        experiment_id, run_name=out.name, tags={"strokeagent.bench": str(out.resolve())}
    )
    run_id = bench_run.info.run_id
    params = {
        "suite": suite or plan["suite"],
        "suite_digest": plan["suite"],
        "rows": plan["rows"],
        "seeds": plan["seeds"],
        "critic": plan["critic"],
        "policies": [p["policy"] for p in summary["policies"]],
    }
    params.update({f"loop.{metric_name(p['policy'])}": p["loop"] for p in summary["policies"]})
    overall = {f"overall.{metric_name(p['policy'])}": p["overall"] for p in summary["policies"]}
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), 0, 0) for k, v in overall.items()],
        params=[Param(k, _param(v)) for k, v in params.items()],
    )
    for report in REPORTS:
        if (out / report).is_file():
            client.log_artifact(run_id, str(out / report))

    for row in summary["policies"]:
        child = client.create_run(
            experiment_id,
            run_name=row["policy"],
            tags={"mlflow.parentRunId": run_id, "strokeagent.policy": row["policy"]},
        )
        child_params = {"policy": row["policy"], "loop": row["loop"], "description": row["description"]}
        child_params.update({"suite": params["suite"], "seeds": plan["seeds"], "critic": plan["critic"]})
        client.log_batch(
            child.info.run_id,
            metrics=[Metric(k, v, 0, 0) for k, v in policy_metrics(row).items()],
            params=[Param(k, _param(v)) for k, v in child_params.items()],
            tags=[RunTag("mlflow.note.content", row["description"])] if row["description"] else [],
        )
        first = next((r for r in result.records if r["policy"] == row["policy"]), None)
        if first is not None and (out / first["filename"]).is_file():
            image = out / first["filename"]
            # runs/POLICY/00000-s0/final.png → samples/00000-s0.png
            with tempfile.TemporaryDirectory(prefix="strokeagent-mlflow-") as folder:
                named = Path(folder) / f"{first['index']:05d}-s{first['seed']}.png"
                named.write_bytes(image.read_bytes())  # MLflow names an artifact by its file name
                client.log_artifact(child.info.run_id, str(named), "samples")
        client.set_terminated(child.info.run_id)
    client.set_terminated(run_id)
    return run_id
