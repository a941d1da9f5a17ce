"""GenEval's summary of a bench, per policy: accuracy per category, overall, and where the time went.

    >>> records = [{"policy": "p", "index": 0, "seed": 0, "tag": "counting", "correct": True, "score": 1.0,
    ...             "steps": 1, "refines": 0, "stage_seconds": {"draft": 0.01}, "seconds": 0.01},
    ...            {"policy": "p", "index": 1, "seed": 0, "tag": "colors", "correct": False, "score": 0.0,
    ...             "steps": 1, "refines": 0, "stage_seconds": {"draft": 0.03}, "seconds": 0.03}]
    >>> row = policy_summary(records, ["counting", "colors"])
    >>> row["categories"]["counting"]["accuracy"], row["overall"], row["images_correct"]
    (1.0, 0.5, 0.5)

As GenEval's ``summary_scores.py``: a category's accuracy is the fraction of
its images judged correct; the **overall score is the mean of the category
accuracies** (not of all images); "% correct prompts" counts a prompt correct
when any of its images is. Categories keep the suite's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean
from typing import Any


def stage_columns(orders: Sequence[Sequence[str]]) -> list[str]:
    """Every stage name in ``orders``, once, keeping each order's sequence where they agree.

        >>> stage_columns([["draft", "reflect", "refine"], ["plan", "critique", "draft"], ["plan", "draft"]])
        ['plan', 'critique', 'draft', 'reflect', 'refine']

    A stage comes after every stage that precedes it in some order (a topological order of the
    "ran before" relation), ties and disagreements broken by first appearance.
    """
    names = list(dict.fromkeys(name for order in orders for name in order))
    before: dict[str, set[str]] = {n: set() for n in names}
    for order in orders:
        for i, name in enumerate(order):
            before[name].update(n for n in order[:i] if n != name)
    out: list[str] = []
    left = list(names)
    while left:
        ready = next((n for n in left if before[n] <= set(out)), None)
        if ready is None:  # the orders disagree (a cycle): take the first left, as it first appeared
            ready = left[0]
        out.append(ready)
        left.remove(ready)
    return out


def policy_summary(records: list[dict[str, Any]], tags: Sequence[str]) -> dict[str, Any]:
    """The figures of one policy's records."""
    categories = {}
    for tag in tags:
        mine = [r for r in records if r["tag"] == tag]
        if mine:
            right = sum(bool(r["correct"]) for r in mine)
            categories[tag] = {"accuracy": right / len(mine), "correct": right, "total": len(mine)}
    prompts: dict[int, bool] = {}
    for r in records:
        prompts[r["index"]] = prompts.get(r["index"], False) or bool(r["correct"])
    # Every stage the runs timed, whatever it is called (a user's `critique` too), in the order it ran.
    seconds = {
        stage: fmean(r["stage_seconds"].get(stage, 0.0) for r in records)
        for stage in stage_columns([list(r["stage_seconds"]) for r in records])
    }
    return {
        "categories": categories,
        "overall": fmean(c["accuracy"] for c in categories.values()) if categories else 0.0,
        "images": len(records),
        "images_correct": fmean(bool(r["correct"]) for r in records) if records else 0.0,
        "prompts_correct": fmean(prompts.values()) if prompts else 0.0,
        "mean_score": fmean(r["score"] for r in records) if records else 0.0,
        "seconds_per_image": seconds,
        "total_seconds_per_image": fmean(r["seconds"] for r in records) if records else 0.0,
        "steps": fmean(r["steps"] for r in records) if records else 0.0,
        "refines": fmean(r["refines"] for r in records) if records else 0.0,
    }


def _loop(policy: Any) -> str:
    """The policy's loop in words, with its stages' roles (a user's refine stage shows as one)."""
    describe = getattr(policy, "describe", None)
    return describe() if callable(describe) else policy.loop.describe()


def summarize(
    records: list[dict[str, Any]],
    policies: Sequence[Any],
    items: Sequence[Any],
    seeds: Sequence[int],
    critic: Any,
) -> dict[str, Any]:
    """The whole bench: one ``policy_summary`` per policy, with its name and description."""
    tags = list(dict.fromkeys(item.tag for item in items))
    rows = []
    for policy in policies:
        row = policy_summary([r for r in records if r["policy"] == policy.name], tags)
        rows.append({"policy": policy.name, "description": policy.description, "loop": _loop(policy), **row})
    return {
        "prompts": len(items),
        "seeds": list(seeds),
        "critic": critic,
        "categories": tags,
        "policies": rows,
    }
