"""How often the independent pixel judge agrees with the renderer's ground truth.

    $ python benchmarks/judge_accuracy.py            # every 2nd row of geneval:553: 277 one-pass canvases

Each row is drawn in one pass (``ablations/one_shot``, seed = row: the drafter's mistakes included), its PNG
re-encoded without metadata, and judged by ``strokeagent.critics.canvas.judge`` from the pixels; the ground
truth is ``strokeagent.critics.ground_truth.truth`` (GenEval's rules on the document: the answer key).
Prints the agreement, the (truth, judge) counts, per category, and every disagreement.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from arguments import positive_int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=positive_int, default=2, help="judge every STEP-th row of the suite")
    parser.add_argument("--policy", default="ablations/one_shot")
    args = parser.parse_args()
    from strokeagent.core.policy import load_policy
    from strokeagent.errors import PolicyError

    try:  # before the suite's first run, not in it
        load_policy(args.policy)
    except PolicyError as e:
        parser.error(f"argument --policy: {e}")

    from PIL import Image

    from strokeagent import generate
    from strokeagent.bench.suites import load_bench_suite
    from strokeagent.critics.canvas import judge
    from strokeagent.critics.ground_truth import truth
    from strokeagent.sketch.document import SketchDocument

    items = load_bench_suite("geneval:553")
    counts: Counter = Counter()
    by_tag: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    disagree = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(0, len(items), args.step):
            item = items[i]
            traj = generate(item.prompt, args.policy, seed=i, out=Path(tmp) / str(i))
            ref = traj.final_image
            buf = io.BytesIO()
            traj.open_image(ref).save(buf, "PNG")  # no metadata: the judge gets pixels only
            said, why = judge(item, Image.open(io.BytesIO(buf.getvalue())))
            right, reasons = truth(item, SketchDocument.from_meta(ref.meta))
            counts[(right, said)] += 1
            by_tag[item.tag][0] += right == said
            by_tag[item.tag][1] += 1
            if right != said:
                disagree.append((i, item.tag, item.prompt, reasons, why))
    n = sum(counts.values())
    agree = counts[(True, True)] + counts[(False, False)]
    print(f"{n} canvases ({args.policy}), agreement {agree}/{n} = {agree / n:.3f}, {time.perf_counter() - start:.0f} s")
    print("(truth, judge) counts:", dict(counts))
    for tag, (a, m) in by_tag.items():
        print(f"  {tag}: {a}/{m}")
    for d in disagree:
        print("  disagree:", d)


if __name__ == "__main__":
    main()
