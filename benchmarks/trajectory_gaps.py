"""Where one trajectory's framework time goes on a GPU machine, and what a change to it saves.

    $ python benchmarks/trajectory_gaps.py [STEPS]         # on a GPU machine, ~75 s after the wheels (30 steps)
    $ python benchmarks/trajectory_gaps.py 2 --tiny        # the same code on the tiny pipeline, CPU, ~15 s

First the PNG encoder on this host (milliseconds for 512² noise: one piece, one stream, ``zlib_stream``,
``png_bytes``, Pillow at level 1, and beside a thread that runs Python without pause, as a kernel-launching
thread nearly does). Then ``benchmarks/gpu.py``'s single trajectory (SD 1.5 size, 512², sketch plan,
image-to-image draft and refine, scripted reflect; 15 stages, 6 images) run in turns with variants, two
rounds, in one process, so that the variants share the machine's state: ``as-is``; ``live-on-loop`` (the
live trajectory.json written on the event loop between stages, as before 2026-11-27's 8fb1cab);
``pieces-32k`` (PNGs compressed in 32 KiB pieces instead of 128 KiB); ``switch-1ms`` (the interpreter's
GIL switch interval at 1 ms instead of 5: a process-wide setting a library must not make, measured to see
how much of the time is threads waiting for the GIL). Each run: wall over in-stage, milliseconds before the
first stage, after the last, and between stages (``gaps_ms[k - 1]`` ends with stage k's event: it holds
stage k's storing of its image). One JSON object, also written to ``$OUT/trajectory-gaps.json``.

Measured on an NVIDIA H200 (16 CPUs, torch 2.11.0+cu130, 30 steps, 2026-11-27; the code of 8fb1cab; the
JSON in ``benchmarks/results/trajectory-gaps-h200-2026-11-27d.json``; "as-is" was then 8fb1cab's code):
PNG of 512² noise: one 128 KiB piece 3.2 ms, one stream 20.8, ``zlib_stream`` 6.8, ``png_bytes`` 10.2,
Pillow level 1 46.7; beside a busy Python thread ``png_bytes`` 120 ms and the pixel digest 6.2 ms (alone
1.0). Framework time per trajectory (wall minus in-stage): as-is 46.4 ms (ratio 1.0128 on 3.63 s in
stages), and 405 ms in the first round, of which 360 ms before the first stage (once, right after the
2 GB model was written to disk; not seen in any other run); live-on-loop 56.6 and 130.9 ms (an 82.6 ms
gap in the second); pieces-32k 49.2 and 43.4; switch-1ms 44.8 and 42.7. In-stage time varied from 3.63
to 5.27 s between runs of the same trajectory, so the milliseconds compare better than the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

VARIANTS = ("as-is", "live-on-loop", "pieces-32k", "switch-1ms")


def ms(fn, n: int = 30) -> float:  # noqa: ANN001
    """Milliseconds per call of ``fn``, the mean of ``n`` after one untimed call."""
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return round((time.perf_counter() - start) / n * 1000, 3)


def png_figures() -> dict[str, float]:
    from strokeagent.core import store

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8))
    data = store.up_filtered(store.Pixels.of(image)).tobytes()  # what png_bytes compresses
    figures = {
        "one_piece_l1": ms(lambda: zlib.compress(data[: store.PIECE_BYTES], 1)),
        "one_stream_l1": ms(lambda: zlib.compress(data, 1)),
        "zlib_stream": ms(lambda: store.zlib_stream(data)),
        "png_bytes": ms(lambda: store.png_bytes(image)),
        "digest": ms(lambda: store.pixel_digest(image)),
        "pillow_l1": ms(lambda: image.save(io.BytesIO(), "PNG", compress_level=1), 10),
    }
    stop = threading.Event()

    def busy() -> None:  # Python without pause: what a thread launching small kernels nearly is
        while not stop.is_set():
            sum(range(200))

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        figures["png_bytes_beside_busy_python"] = ms(lambda: store.png_bytes(image), 10)
        figures["digest_beside_busy_python"] = ms(lambda: store.pixel_digest(image), 10)
    finally:
        stop.set()
        thread.join()
    return figures


_AS_IS: dict = {}  # what a variant replaces, as the code has it


def variant(name: str) -> None:
    """Set the process up as ``name`` says (see the module docstring)."""
    from strokeagent.core import store
    from strokeagent.runs import api

    live = _AS_IS.setdefault("write_trajectory_on", api.RunFolder.write_trajectory_on)
    on_loop = lambda self, writer, traj: self.write_trajectory(traj)  # noqa: E731
    api.RunFolder.write_trajectory_on = on_loop if name == "live-on-loop" else live
    store.PIECE_BYTES = 1 << 15 if name == "pieces-32k" else 1 << 17
    sys.setswitchinterval(0.001 if name == "switch-1ms" else 0.005)


def main(argv: list[str]) -> dict:
    from arguments import positive_int

    from strokeagent.extras import ExtraMissing, require

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="?", type=positive_int, default=30, help="denoising steps (default 30)")
    parser.add_argument("--tiny", action="store_true", help="the tiny pipeline, on the CPU")
    args = parser.parse_args(argv)
    try:  # the pipelines need diffusers and transformers: one line, not a traceback
        require(("diffusers",), "benchmarks/trajectory_gaps.py", modules=("torch", "diffusers", "transformers"))
    except ExtraMissing as e:
        raise SystemExit(f"error: {e}") from None
    import torch

    if not args.tiny and not torch.cuda.is_available():
        parser.error("torch sees no GPU here (torch.cuda.is_available() is False); --tiny runs the same code on the CPU")
    tiny, steps = args.tiny, args.steps
    out = Path(os.environ.get("OUT", tempfile.gettempdir())) / "trajectory-gaps.json"
    result: dict = {"cpus": os.cpu_count(), "steps": steps, "tiny": tiny, "png_ms": png_figures()}
    print(json.dumps(result["png_ms"]), flush=True)

    # The model's files are gigabytes at SD 1.5 size: gone when the run ends, however it ends.
    with tempfile.TemporaryDirectory(prefix="trajectory-gaps-") as tmp:
        result["runs"] = measure(result, Path(tmp), tiny, steps)
    medians = {name: round(statistics.median(r["beside_ms"] for r in rs), 1) for name, rs in result["runs"].items()}
    result["beside_ms_median"] = medians
    out.write_text(json.dumps(result, indent=1))
    return result


def measure(result: dict, root: Path, tiny: bool, steps: int) -> dict[str, list[dict]]:
    """The trajectory in turns with each variant, two rounds; ``result`` gets the build time."""
    import gpu
    from overhead import one_run

    import strokeagent
    from strokeagent.backends import load_backend

    device, dtype = ("cpu", "float32") if tiny else ("cuda", "float16")
    start = time.perf_counter()
    toml = gpu.sd_description(gpu.build_sd(tiny, device, root / "sd"), root / "sd.toml", device, dtype)
    load_backend(toml)
    policy = gpu.diffusion_policy(toml, 64 if tiny else 512, steps)
    strokeagent.generate(gpu.PROMPT, policy=policy, seed=100, out=root / "warm-up")
    result["build_s"] = round(time.perf_counter() - start, 1)

    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    try:
        for round_ in range(2):
            for name in VARIANTS:
                variant(name)
                r = asyncio.run(one_run(policy, root / f"{name}-{round_}", gpu.PROMPT, seed=0))
                runs[name].append({
                    "ratio": round(r["ratio"], 5), "wall": round(r["wall"], 4), "inside": round(r["inside"], 4),
                    "beside_ms": round((r["wall"] - r["inside"]) * 1000, 1),
                    "start_ms": round(r["start"] * 1000, 2), "finish_ms": round(r["finish"] * 1000, 2),
                    "gaps_ms": [round(g * 1000, 1) for g in r["gaps"]],
                })  # fmt: skip
                print(name, json.dumps(runs[name][-1]), flush=True)
    finally:
        variant("as-is")
    return runs


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])["beside_ms_median"]))
