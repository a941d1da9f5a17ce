"""What each stage adds: the sketch ablations on a generated GenEval suite, judged by GenEval's rules.

    $ python benchmarks/sketch_ablation.py              # 553 prompts × 4 policies, ~3 min on 2 cores
    $ python benchmarks/sketch_ablation.py --n 120 --mistake-rate 0.4

For every policy in ``policies/ablations`` (one_shot: draft only; plan_draft;
draft_reflect_refine; full), each prompt of ``strokeagent.scene.generate_suite``
(GenEval's six categories in its proportions) runs through
``strokeagent.generate`` with seed = its row number, and the final canvas is
judged by ``strokeagent.critics.canvas`` from its pixels alone (its document is
not read; ``--truth`` judges by the document's answer key instead). The table
gives per-category accuracy and GenEval's overall score (the mean of the six
category accuracies), then per prompt: steps, refine rounds, and seconds inside
the stages (the framework's own overhead excluded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from arguments import fraction, positive_int

POLICIES = ("one_shot", "plan_draft", "draft_reflect_refine", "full")
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def _policy(name: str, mistake_rate: float | None) -> Any:
    from strokeagent import load_policy
    from strokeagent.core.policy import policy_from_tables

    policy = load_policy(f"ablations/{name}")
    if mistake_rate is None:
        return policy
    tables = policy.record()
    stages = {k: dict(v) for k, v in tables["stages"].items()}
    stages["draft"]["mistake_rate"] = mistake_rate
    return policy_from_tables({**tables, "stages": stages}, where=name)


def _run_chunk(args: tuple[list[tuple[int, dict]], float | None, bool]) -> list[dict[str, Any]]:
    from strokeagent import generate
    from strokeagent.core.stages import Canvas
    from strokeagent.core.store import ArtifactStore
    from strokeagent.critics.canvas import judge
    from strokeagent.critics.ground_truth import truth
    from strokeagent.scene import SuiteItem

    rows, mistake_rate, by_truth = args
    decide = truth if by_truth else judge
    policies = {name: _policy(name, mistake_rate) for name in POLICIES}
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, raw in rows:
            item = SuiteItem.model_validate(raw)
            for name, policy in policies.items():
                folder = Path(tmp) / f"{name}-{index}"
                traj = generate(item.prompt, policy, seed=index, out=folder)
                ref = traj.final_image
                canvas = Canvas(ArtifactStore(folder / "images").open(ref), dict(ref.meta))
                correct, _ = decide(item, canvas)
                out.append({"policy": name, "tag": item.tag, "correct": correct, "steps": len(traj.steps),
                            "refines": sum(len(s.refinements) for s in traj.steps),
                            "seconds": sum(traj.stage_seconds().values())})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=553, help="prompts in the suite (GenEval has 553)")
    parser.add_argument("--seed", type=int, default=0, help="suite seed")
    parser.add_argument("--mistake-rate", type=fraction, default=None, help="override the drafter's rate")
    parser.add_argument("--truth", action="store_true", help="judge by the documents' answer key, not pixels")
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    from strokeagent.scene import generate_suite

    items = [
        (i, it.model_dump(by_alias=True, exclude_none=True))
        for i, it in enumerate(generate_suite(args.n, args.seed))
    ]
    chunks = [(items[k :: args.workers * 4], args.mistake_rate, args.truth) for k in range(args.workers * 4)]
    with ProcessPoolExecutor(args.workers) as pool:
        results = [r for chunk in pool.map(_run_chunk, chunks) for r in chunk]

    by: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in results:
        by[r["policy"], r["tag"]].append(r["correct"])
    rate = "default" if args.mistake_rate is None else args.mistake_rate
    print(f"GenEval-style suite: {args.n} prompts (seed {args.seed}), drafter mistake rate {rate}\n")
    print("| policy | " + " | ".join(TAGS) + " | overall | steps | refines | stage s |")
    print("|---" * (len(TAGS) + 5) + "|")
    for name in POLICIES:
        accs = [statistics.fmean(by[name, t]) for t in TAGS if by[name, t]]
        mine = [r for r in results if r["policy"] == name]
        steps = statistics.fmean(r["steps"] for r in mine)
        refines = statistics.fmean(r["refines"] for r in mine)
        secs = statistics.fmean(r["seconds"] for r in mine)
        cells = " | ".join(f"{statistics.fmean(by[name, t]):.3f}" if by[name, t] else "–" for t in TAGS)
        print(
            f"| {name} | {cells} | **{statistics.fmean(accs):.3f}** | {steps:.2f} | {refines:.2f} | {secs:.3f} |"
        )


if __name__ == "__main__":
    main()
