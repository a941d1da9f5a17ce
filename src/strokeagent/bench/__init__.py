"""Benchmarks: many prompts through several policies, scored the way the field scores them.

    >>> from strokeagent.bench import load_bench_suite, run_bench
    >>> items = load_bench_suite("geneval:60:0")                       # a generated GenEval-style suite
    >>> result = run_bench(items, ["ablations/one_shot", "ablations/full"], "bench/demo")  # doctest: +SKIP
    >>> result.summary["policies"][0]["overall"]                        # doctest: +SKIP

Modules: ``suites`` (GenEval metadata files, generated suites, T2I-CompBench-style
prompt lists), ``runner`` (every prompt × policy × seed as a run folder,
concurrent and resumable), ``summary`` (GenEval's accuracies, per-stage time),
``reports`` (JSONL, JSON, markdown, CSV, a bar chart PNG, index.html).
"""

from __future__ import annotations

from strokeagent.errors import BenchError


def __getattr__(name: str):  # lazy: the CLI imports this package at start-up
    if name in ("run_bench", "arun_bench", "BenchResult", "ablation_policies"):
        from strokeagent.bench import runner

        return getattr(runner, name)
    if name in ("load_bench_suite",):
        from strokeagent.bench import suites

        return getattr(suites, name)
    raise AttributeError(name)


__all__ = ["BenchError", "BenchResult", "ablation_policies", "arun_bench", "load_bench_suite", "run_bench"]
