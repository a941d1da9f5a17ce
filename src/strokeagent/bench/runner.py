"""The bench runner: every (prompt, policy, seed) as a run folder, scored, concurrent and resumable.

    >>> result = run_bench(load_bench_suite("geneval:24"), ["ablations/one_shot", "ablations/full"],
    ...                    "bench/demo", seeds=(0,))                   # doctest: +SKIP
    >>> [(p["policy"], round(p["overall"], 3)) for p in result.summary["policies"]]   # doctest: +SKIP

A bench folder::

    OUT/
      bench.json          what was asked: the suite's digest, the policies' tables, seeds, critic
      suite.jsonl         the rows, in GenEval's format (reusable as a suite)
      runs/POLICY/IIIII-sS/   one run folder per sample (strokeagent.runs.api)
      samples.jsonl       one scored sample per line: GenEval's fields plus ours
      summary.json  table.md  table.csv  chart.png  index.html

A sample is done when its run folder's ``run.json`` says ``finished`` and its
line is in ``samples.jsonl``. Run the same bench again after a kill and it
continues: finished samples are kept, a run killed mid-way resumes from its
last checkpoint (or starts over if it had none), and the figures are the same
as an uninterrupted bench. ``samples.jsonl`` is appended as samples finish
and rewritten in suite order at the end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strokeagent.bench.samples import Judge, Sample, finished, run_sample
from strokeagent.bench.suites import suite_digest
from strokeagent.core.policy import Policy, list_bundled, load_policy
from strokeagent.core.store import atomic_write, new_output_folder
from strokeagent.errors import BenchError
from strokeagent.scene.geneval import SuiteItem

DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True)
class BenchResult:
    out: Path
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    ran: int  # samples run (or finished) in this call; the rest were already done


def ablation_policies() -> list[str]:
    """Every bundled stage-order ablation, ``ablations/*``, in name order."""
    return [name for name, _ in list_bundled() if name.startswith("ablations/")]


class SampleLog:
    """``samples.jsonl``: read what a killed bench left (a torn last line dropped), append as samples finish."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    self.records[record["key"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # the line a kill tore in half
            self.rewrite(list(self.records.values()))

    def append(self, record: dict[str, Any]) -> None:
        self.records[record["key"]] = record
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in records))


def _check_folder(out: Path, plan: dict[str, Any]) -> None:
    """Start a bench folder, or accept one that holds the same bench; refuse anything else."""
    bench_file = out / "bench.json"
    if bench_file.is_file():
        try:
            old = json.loads(bench_file.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old != plan:
            raise BenchError(
                f"{out} holds another bench (other prompts, policies, seeds or critic); "
                "choose another --out, or remove it to start over"
            )
        return
    with new_output_folder(out, what="bench", taken="is not a bench; choose another --out", error=BenchError):
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(bench_file, json.dumps(plan, indent=2) + "\n")


def _policies(policies: Sequence[Policy | str | Path]) -> list[Policy]:
    loaded = [p if isinstance(p, Policy) else load_policy(p) for p in policies]
    names = [p.name for p in loaded]
    if not loaded:
        raise BenchError("no policy to bench; give at least one --policy")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise BenchError(f"two policies are both named {duplicated[0]!r}; give each policy file its own name")
    return loaded


def _tables(policy: Policy) -> dict[str, Any]:
    """What rebuilds ``policy`` (its stages' tables and its loop), as bench.json keeps it: JSON as read back."""
    return json.loads(json.dumps(policy.record(), default=str))


async def arun_bench(
    items: Sequence[SuiteItem],
    policies: Sequence[Policy | str | Path],
    out: str | Path,
    *,
    seeds: Sequence[int] = (0,),
    critic: Any = "auto",
    concurrency: int = DEFAULT_CONCURRENCY,
    on_sample: Callable[[dict[str, Any], int, int], None] | None = None,
    ray: bool | str | None = None,
) -> BenchResult:
    """Run and score every row × policy × seed into ``out``; see the module doc.

    ``critic`` is ``"auto"`` (the sketch critic for stroke canvases; other images
    need a critic named), a kind, a table ``{"kind": "geneval", "detector": ...}``
    or a critic object. ``on_sample(record, done, total)`` follows progress.
    ``ray``: run every sample on Ray (``True``: start or join a local instance; a
    string: a cluster address); the folder and figures are those of a local bench
    (``strokeagent.bench.cluster``). ``concurrency`` is then per actor.
    """
    from strokeagent.bench.reports import write_reports
    from strokeagent.bench.summary import summarize

    if concurrency < 1:
        raise BenchError(f"concurrency must be at least 1, got {concurrency}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise BenchError(f"seeds must be distinct and at least one; got {list(seeds)}")
    loaded = _policies(policies)
    out = Path(out)
    critic_spec = critic if isinstance(critic, str | dict) else type(critic).__name__
    plan = {
        "suite": suite_digest(list(items)),
        "rows": len(items),
        "policies": [{"name": p.name, "tables": _tables(p)} for p in loaded],
        "seeds": list(seeds),
        "critic": critic_spec,
    }
    # Before the folder: a critic that cannot be built leaves nothing behind. On Ray each worker builds it.
    if ray:
        from strokeagent.bench.cluster import check_shippable

        check_shippable(critic, plan["policies"])
    judge = Judge(critic) if not ray else None
    _check_folder(out, plan)
    atomic_write(out / "suite.jsonl", "".join(i.to_json() + "\n" for i in items))
    log = SampleLog(out / "samples.jsonl")
    samples = [Sample(i, p, s, item) for p in loaded for i, item in enumerate(items) for s in seeds]
    todo = [s for s in samples if not (s.key in log.records and finished(out / "runs" / s.key))]
    done = len(samples) - len(todo)
    pool = None
    if ray and todo:
        from strokeagent.bench.cluster import RayPool

        left = {p.name: sum(s.policy.name == p.name for s in todo) for p in loaded}
        tables = {p["name"]: p["tables"] for p in plan["policies"]}
        pool = RayPool(loaded, tables, out, critic, concurrency, left, address=ray)
    # On Ray each actor runs up to `concurrency` samples; the driver only waits.
    gate = asyncio.Semaphore(concurrency if pool is None else max(1, len(todo)))

    async def one(sample: Sample) -> None:
        nonlocal done
        async with gate:
            if pool is not None:
                record = await pool.run(sample)
            else:
                record = await run_sample(sample, out, judge)
        log.append(record)
        done += 1
        if on_sample is not None:
            on_sample(record, done, len(samples))

    tasks = [asyncio.create_task(one(sample)) for sample in todo]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        # One failure stops the bench (what finished is kept); the first error is the one to show.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        if pool is not None:
            pool.close()
    records = [log.records[s.key] for s in samples]
    log.rewrite(records)
    summary = summarize(records, loaded, items, seeds, critic_spec)
    write_reports(out, records, summary)
    return BenchResult(out, records, summary, ran=len(todo))


def run_bench(*args: Any, **kwargs: Any) -> BenchResult:
    """The synchronous twin of ``arun_bench``."""
    from strokeagent.runs.api import _run_sync

    return _run_sync(arun_bench(*args, **kwargs))
