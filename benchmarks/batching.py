"""Eight concurrent draft requests on the tiny pipeline: micro-batched against one by one.

    .venv/bin/python benchmarks/batching.py [--requests 8] [--size 64] [--steps 4] [--repeats 3]

Eight callers each ask for one 64×64, 4-step text-to-image draft at the same
moment, as eight runs in one process would. "one by one" is the same backend
with ``max_batch = 1`` (each request is its own pipeline call); "batched" lets
the micro-batcher (``strokeagent.backends.image.MicroBatcher``, 5 ms window)
put all eight into one call. The same batcher sits behind the HTTP service
(LitServe's own batching, same grouping code), so this is what the service
gains too, less the HTTP round trip. Best of ``--repeats`` wall-clock times.

Figures, measured on a 2-core CPU VM while five other engineers' jobs kept its
load average at 8–12 (torch 2.13.0+cpu, diffusers 0.42.1, threads = 1, tiny
random-weight SD 1.5-shaped pipeline, 8 requests, 64×64, 4 steps), two runs:

    one by one   4.34 s (8 calls)   7.07 s (8 calls)
    batched      3.62 s (1 call)    6.17 s (1 call)
    speed-up     1.20×              1.15×

On a machine this busy the figures swing by 60 % between runs; the ratio is
what they share. The gain comes from running the UNet, text encoder and VAE
once on a batch of 8 instead of eight times on one. A tiny model on one CPU
thread is compute-bound per image, so the gain is small; real models on a GPU
gain more (OFFLINE-MODELS.md, H200: SD 1.5 at 512², 30 steps, 1.23 s for one
image, 7.06 s for eight, 0.88 s each). Not measured on a GPU in this session.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from arguments import positive_int

os.environ.setdefault("HF_HUB_OFFLINE", "1")


async def concurrent(backend, requests) -> float:  # noqa: ANN001
    start = time.perf_counter()
    await asyncio.gather(*(backend.generate([r]) for r in requests))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=positive_int, default=8)
    parser.add_argument("--size", type=positive_int, default=64)
    parser.add_argument("--steps", type=positive_int, default=4)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--threads", type=positive_int, default=1)
    args = parser.parse_args()
    if args.size % 8:
        parser.error(f"argument --size: '{args.size}': give a multiple of 8 (the VAE halves it three times)")

    from strokeagent.backends.diffusers import DiffusersBackend
    from strokeagent.backends.image import ImageRequest
    from strokeagent.testing.diffusers import save_tiny_sd

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_tiny_sd(Path(tmp) / "tiny-sd")
        requests = [
            ImageRequest(
                f"a red apple, draft {i}", width=args.size, height=args.size, steps=args.steps, seed=i
            )
            for i in range(args.requests)
        ]
        results = {}
        for label, max_batch in (("one by one", 1), ("batched", args.requests)):
            backend = DiffusersBackend(model=str(folder), max_batch=max_batch, threads=args.threads)
            asyncio.run(concurrent(backend, requests[:2]))  # warm up: first calls allocate
            calls_before = backend.batch_stats.calls
            best = min(asyncio.run(concurrent(backend, requests)) for _ in range(args.repeats))
            calls = (backend.batch_stats.calls - calls_before) // args.repeats
            results[label] = best
            print(f"{label:<11} {best:6.2f} s   ({calls} call{'s' if calls != 1 else ''})")
        print(f"speed-up    {results['one by one'] / results['batched']:6.2f}×")


if __name__ == "__main__":
    main()
