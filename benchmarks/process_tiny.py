"""What process-tiny's ablation bench shows beyond accuracy: its inspector, its steps, its decoding.

    strokeagent ablate geneval:553 --policy process-tiny --out bench/process-tiny
    python benchmarks/process_tiny.py bench/process-tiny            # a table; --json for the numbers

Reads a bench folder written by `strokeagent ablate` (its samples.jsonl and run folders) and reports,
per policy:

- accuracy (the bench's own: the independent pixel judge);
- the inspector's precision and recall: every inspection the model wrote, against the answer key of
  the canvas it inspected — the canvas's stroke document checked (``critics.ground_truth``) against
  what the step asked for so far (its plan's description; the prompt where no plan was written).
  The key is read here, after the run; the model only ever saw the pixels;
- steps per prompt (the paper: 2.62 on average, at most 5) and refines per prompt;
- decoding steps per final image: the stroke tokens the model wrote in every pass that led to it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

from strokeagent.core.state import ImageRef, Plan, Reflection, Trajectory
from strokeagent.critics.ground_truth import truth
from strokeagent.sketch.scenes import scene_of_prompt


def inspections(traj: Trajectory) -> list[tuple[bool, bool]]:
    """(the model said wrong, the key says wrong) for each inspection of a painted canvas."""
    pairs = []
    for step in traj.steps:
        asked, canvas = traj.prompt, None
        for state in step.states:
            value = state.value
            if isinstance(value, Plan) and value.description:
                asked = value.description
            elif isinstance(value, ImageRef):
                canvas = value
            elif isinstance(value, Reflection) and canvas is not None and "sketch" in canvas.meta:
                if value.meta.get("process", {}).get("closed") and not value.meta["process"].get("ops"):
                    continue  # a closing step paints and inspects nothing
                said_wrong = not value.ok
                key_wrong = not truth(scene_of_prompt(asked), canvas.meta)[0]
                pairs.append((said_wrong, key_wrong))
    return pairs


def decoding_steps(traj: Trajectory) -> int:
    """The stroke tokens of every pass (draft and refine) that painted this run's canvases."""
    return sum(t.generated_tokens or 0 for t in traj.timings if t.stage in ("draft", "refine"))


def painted_steps(traj: Trajectory) -> int:
    """Steps that painted something: a closing step (the model closed at its plan) paints nothing."""
    return sum(1 for step in traj.steps if not any(
        isinstance(s.value, Plan) and s.value.done and s.value.meta.get("process", {}).get("closed")
        for s in step.states))  # fmt: skip


def report(bench: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (bench / "samples.jsonl").read_text().splitlines() if line.strip()]
    by_policy: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_policy[r["policy"]].append(r)
    out = {}
    for policy, samples in sorted(by_policy.items()):
        pairs, steps, tokens, refines = [], [], [], []
        for r in samples:
            folder = bench / Path(r["filename"]).parent
            traj = Trajectory.model_validate_json((folder / "trajectory.json").read_text())
            pairs += inspections(traj)
            steps.append(painted_steps(traj))
            tokens.append(decoding_steps(traj))
            refines.append(r.get("refines", 0))
        tp = sum(1 for said, key in pairs if said and key)
        fp = sum(1 for said, key in pairs if said and not key)
        fn = sum(1 for said, key in pairs if not said and key)
        out[policy] = {
            "images": len(samples),
            "accuracy_images": sum(r["correct"] for r in samples) / len(samples),
            "inspections": len(pairs),
            "inspector_precision": tp / (tp + fp) if tp + fp else None,
            "inspector_recall": tp / (tp + fn) if tp + fn else None,
            "inspector_counts": {"true_alarm": tp, "false_alarm": fp, "missed": fn,
                                 "true_ok": len(pairs) - tp - fp - fn},  # fmt: skip
            "steps_mean": statistics.mean(steps),
            "steps_max": max(steps),
            "steps_histogram": dict(sorted(Counter(steps).items())),
            "refines_mean": statistics.mean(refines),
            "decoding_steps_per_image_mean": statistics.mean(tokens),
            "decoding_steps_per_image_max": max(tokens),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", type=Path, help="a folder written by `strokeagent ablate`")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    if not (args.bench / "samples.jsonl").is_file():
        sys.exit(f"error: {args.bench} has no samples.jsonl; give a folder written by `strokeagent ablate`")
    numbers = report(args.bench)
    if args.json:
        print(json.dumps(numbers, indent=1))
        return
    print("| policy | images | correct | inspections | precision | recall | steps (mean, max) | steps histogram "
          "| refines | decoding steps / image |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for policy, n in numbers.items():
        fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {policy} | {n['images']} | {n['accuracy_images']:.3f} | {n['inspections']} | "
              f"{fmt(n['inspector_precision'])} | {fmt(n['inspector_recall'])} | {n['steps_mean']:.2f}, "
              f"{n['steps_max']} | {n['steps_histogram']} | {n['refines_mean']:.2f} | "
              f"{n['decoding_steps_per_image_mean']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
