"""Nothing lost, nothing crashes: tests/robustness at full size, as one table.

    python benchmarks/robustness.py                 # 100 kill points, every corruption case, 10,000 prompts,
                                                    # 1,000 policy files, 30 % text-head faults on 30 runs
    python benchmarks/robustness.py --scale 0.1     # a tenth of each

Rows: kill -9 at random points (every started run resumed byte-identical, none lost); every damaged run
folder (one line or a correct resume, never left "running"); fuzzed prompts through the sketch planner
(no traceback, no stage over 2 s), and a sample through the whole sketch policy (the same budget);
fuzzed policy files (no traceback); a text head failing 30 % of calls (none lost).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "robustness"), str(ROOT / "tests")]
os.environ.setdefault("OMP_NUM_THREADS", "1")

import test_corruption  # noqa: E402
import test_fuzz  # noqa: E402
import test_kill  # noqa: E402
import test_text_head_faults  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--sketch-prompts", type=int, default=50, help="prompts also run through the whole sketch policy"
    )
    args = ap.parse_args()
    size = lambda full: max(1, round(full * args.scale))  # noqa: E731
    rows: list[tuple[str, str, str, str]] = []
    failures: list[str] = []

    def row(name: str, n: str, result: str, broken: list, seconds: float) -> None:
        rows.append(
            (name, n, result if not broken else f"{result}; BROKEN {len(broken)}", f"{seconds:.0f} s")
        )
        failures.extend(f"{name}: {b}" for b in broken[:10])

    with tempfile.TemporaryDirectory(prefix="robustness-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        k = test_kill.check_kills(size(100), args.seed, work / "kill")
        where = ", ".join(f"{v} {w}" for w, v in sorted(k["where"].items()))
        row("kill -9 at random points", str(k["points"]), f"{k['resumed']} resumed, {len(k['lost'])} lost ({where})",
            k["lost"], time.perf_counter() - t)  # fmt: skip

        t = time.perf_counter()
        (work / "corrupt").mkdir()
        c = test_corruption.check_corruption(work / "corrupt")
        row("damaged run folders", str(c["cases"]), f"{c['resumed']} resumed byte-identical, {c['refused']} one line",
            c["broken"], time.perf_counter() - t)  # fmt: skip

        t = time.perf_counter()
        p = test_fuzz.check_prompts(size(10_000), args.seed, work / "prompts")
        row("fuzzed prompts (sketch planner)", str(size(10_000)),
            f"{p['ran']} ran, {p['refused']} one line, {len(p['tracebacks'])} tracebacks, slowest stage "
            f"{p['slowest']:.2f} s", p["tracebacks"] + p["slow"], time.perf_counter() - t)  # fmt: skip

        t = time.perf_counter()
        n = max(1, round(args.sketch_prompts * min(1.0, args.scale * 10)))
        s = test_fuzz.check_prompts(n, args.seed + 1, work / "sketch", policy="sketch")
        row("fuzzed prompts (whole sketch policy)", str(n),
            f"{s['ran']} ran, {s['refused']} one line, {len(s['slow'])} with a stage over 2 s, slowest "
            f"{s['slowest']:.2f} s", s["tracebacks"] + s["slow"], time.perf_counter() - t)  # fmt: skip

        t = time.perf_counter()
        f = test_fuzz.check_policies(size(1_000), args.seed, work / "policies", run_loaded=size(50))
        row("fuzzed policy files", str(size(1_000)),
            f"{f['loaded']} loaded ({f['ran']} run), {f['refused']} one line, {len(f['tracebacks'])} tracebacks",
            f["tracebacks"] + f["slow"], time.perf_counter() - t)  # fmt: skip

        t = time.perf_counter()
        h = test_text_head_faults.check_faulty_head(size(30), args.seed, work / "head")
        row("text head, 30 % faults", str(h["runs"]),
            f"{h['faults']}/{h['calls']} calls faulted, {h['failed_runs']} runs failed, {h['resumes']} resumes, "
            f"{len(h['lost'])} lost", h["lost"], time.perf_counter() - t)  # fmt: skip

    widths = [max(len(r[i]) for r in [("case", "n", "result", "time"), *rows]) for i in range(4)]
    for r in [("case", "n", "result", "time"), tuple("-" * w for w in widths), *rows]:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    for line in failures:
        print(f"  {line}"[:400])
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
