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
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strokeagent.bench.suites import suite_digest
from strokeagent.core.policy import Policy, list_bundled, load_policy
from strokeagent.core.stages import Canvas
from strokeagent.core.store import atomic_write, new_output_folder
from strokeagent.critics import Critic, build_critic
from strokeagent.errors import BenchError
from strokeagent.scene.geneval import SuiteItem

DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True)
class Sample:
    index: int  # row of the suite
    policy: Policy
    seed: int
    item: SuiteItem

    @property
    def key(self) -> str:
        return f"{self.policy.name}/{self.index:05d}-s{self.seed}"

    @property
    def run_seed(self) -> int:
        """The run's seed: its own per row. One seed for every prompt would put every prompt's
        random drafting mistakes on the same draws, and the rows would not be independent samples."""
        return self.seed * 1_000_003 + self.index


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
    judge = _Judge(critic) if not ray else None
    _check_folder(out, plan)
    atomic_write(out / "suite.jsonl", "".join(i.to_json() + "\n" for i in items))
    log = SampleLog(out / "samples.jsonl")
    samples = [Sample(i, p, s, item) for p in loaded for i, item in enumerate(items) for s in seeds]
    todo = [s for s in samples if not (s.key in log.records and _finished(out / "runs" / s.key))]
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
                record = await _run_sample(sample, out, judge)
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


def _finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("status") == "finished"
    except (OSError, json.JSONDecodeError):
        return False


async def _trajectory(sample: Sample, run_dir: Path) -> Any:
    """The finished trajectory of a sample's run: read, resumed, or run from the start."""
    from strokeagent.runs.api import RunFolder, agenerate, aresume_to_end

    if _finished(run_dir):
        return RunFolder.open(run_dir).read_trajectory()
    if (run_dir / "run.json").is_file():
        # Killed, failed or paused: go on from its checkpoint (or from run.json, if it had none). A run that
        # fails again keeps every image it made; the bench records the failure.
        return await aresume_to_end(run_dir, policy=sample.policy)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # killed before it wrote run.json: no stage had run, nothing was made
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return await agenerate(sample.item.prompt, sample.policy, seed=sample.run_seed, out=run_dir)


class _Judge:
    """The bench's critic; ``auto`` picks the sketch critic and refuses other images with advice."""

    def __init__(self, critic: Any) -> None:
        self.auto = critic == "auto"
        self.critic: Critic = build_critic("sketch" if self.auto else critic, where="--critic")

    async def __call__(self, canvas: Canvas, item: SuiteItem) -> Any:
        from strokeagent.critics.sketch import is_sketch

        if self.auto and not is_sketch(canvas):
            raise BenchError(
                "this policy's images are not stroke canvases, so the sketch critic cannot judge them; "
                "pass --critic geneval --detector MODEL_DIR --clip CLIP_DIR (or another critic)"
            )
        # Prompt lists carry no clauses: the critic reads the prompt itself.
        return await self.critic.score(canvas, item.prompt, scene=item if item.include else None)


async def _run_sample(sample: Sample, out: Path, judge: _Judge) -> dict[str, Any]:
    run_dir = out / "runs" / sample.key
    traj = await _trajectory(sample, run_dir)
    if traj.final_image is None:
        raise BenchError(f"the run in {run_dir} finished without a final image")
    from strokeagent.core.store import ArtifactStore

    canvas = Canvas(ArtifactStore(run_dir / "images").open(traj.final_image), dict(traj.final_image.meta))
    verdict = await judge(canvas, sample.item)
    stage_seconds = traj.stage_seconds()
    return {
        "key": sample.key,
        "policy": sample.policy.name,
        "index": sample.index,
        "seed": sample.seed,
        "run_seed": sample.run_seed,
        # GenEval's own fields, so its summary script reads this file too.
        "filename": f"runs/{sample.key}/final.png",
        "tag": sample.item.tag,
        "prompt": sample.item.prompt,
        "correct": verdict.correct,
        "reason": verdict.reason,
        "metadata": sample.item.to_json(),
        "score": verdict.score,
        "violations": [v.kind for v in verdict.violations],
        "critic": verdict.critic,
        "steps": len(traj.steps),
        "refines": sum(len(step.refinements) for step in traj.steps),
        "stage_seconds": {k: round(v, 6) for k, v in stage_seconds.items()},
        "seconds": round(sum(stage_seconds.values()), 6),
    }
