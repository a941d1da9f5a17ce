"""How often the pixel inspector is wrong: misses, false alarms and per-class detection, against ground truth.

    $ python benchmarks/inspector.py --n 120            # one-shot drafts at the default and a high mistake rate

Each prompt of the generated GenEval suite is drafted in one pass (``SketchDrafter``, seed = row) at each
mistake rate; ground truth is GenEval's rules on the document (``critics.ground_truth.truth``: the answer key,
read here only); the inspector is ``SketchReflector(checks=["image"])``, which sees the RGB pixels alone.
Miss rate: the inspector says ok on a canvas that fails its prompt. False-alarm rate: it flags a canvas
that passes. Per class: of the instances that count in truth (half visible), the share ``perceive`` finds
with the right class and a box overlapping by IoU >= 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict

from arguments import fraction, positive_int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=553)
    parser.add_argument("--rates", type=fraction, nargs="+", default=[0.25, 0.6])
    args = parser.parse_args()

    import tempfile

    from strokeagent.core.stages import TrajectoryView
    from strokeagent.core.state import Plan, Step, Trajectory
    from strokeagent.core.store import ArtifactStore
    from strokeagent.critics.ground_truth import truth as truth_verdict
    from strokeagent.scene import generate_suite
    from strokeagent.sketch import SketchDrafter, SketchReflector
    from strokeagent.sketch.glyphs import render
    from strokeagent.sketch.measure import inspect
    from strokeagent.sketch.perceive import perceive
    from strokeagent.sketch.refiner import _iou

    reflector = SketchReflector(checks=["image"])
    items = generate_suite(args.n, 0)
    with tempfile.TemporaryDirectory() as tmp:
        store = ArtifactStore(tmp)
        for rate in args.rates:
            drafter = SketchDrafter(mistake_rate=rate)
            miss = alarm = wrong = right = 0
            per: dict[str, list[bool]] = defaultdict(list)
            for i, item in enumerate(items):
                plan = Plan(instruction=item.prompt, description=item.prompt, done=True)
                traj = Trajectory(prompt=item.prompt, seed=i, steps=[Step(index=0, plan=plan)])
                canvas = asyncio.run(drafter.draft(TrajectoryView(traj, 0, "draft", i, store), plan))
                from strokeagent.sketch.document import SketchDocument

                doc = SketchDocument.from_meta(canvas.meta)
                truth, _ = truth_verdict(item, doc)
                said = asyncio.run(
                    reflector.reflect(TrajectoryView(traj, 0, "reflect", i, store), plan, canvas)
                ).ok
                if truth:
                    right += 1
                    alarm += not said
                else:
                    wrong += 1
                    miss += said
                found = [f for f in perceive(canvas.image) if f.counts]
                for s in inspect(render(doc)[0], doc):
                    if s.counts:
                        per[s.cls].append(any(f.cls == s.cls and _iou(f.box, s.box) >= 0.5 for f in found))
            total = [x for v in per.values() for x in v]
            print(f"\nmistake rate {rate}: {len(items)} canvases, {wrong} wrong, {right} right")
            print(f"miss rate {miss / max(1, wrong):.3f} ({miss}/{wrong}); "
                  f"false alarm rate {alarm / max(1, right):.3f} ({alarm}/{right}); "
                  f"instance detection {sum(total) / max(1, len(total)):.3f} ({sum(total)}/{len(total)})")  # fmt: skip
            worst = sorted(per.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))
            print(
                "per class (worst first): "
                + ", ".join(f"{c} {sum(v) / len(v):.2f} ({len(v)})" for c, v in worst)
            )


if __name__ == "__main__":
    main()
