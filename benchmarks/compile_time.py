"""What ``decode = "compiled"`` pays to compile Janus's image step, by how its shapes are declared.

    $ python benchmarks/compile_time.py                      # Janus-Pro-1B size on the CPU, ~5 min on 2 cores
    $ python benchmarks/compile_time.py --size tiny dynamic  # the tiny model, one variant
    $ python benchmarks/compile_time.py --device cuda width --rooms 832,576 --caches  # as gpu.py would meet it

The image step (both guidance rows, one token) is compiled anew for each variant and called at three cache
widths (``--rooms``), as a process run meets them while its context grows (the static cache is allocated in
blocks of 256 positions): the seconds of each width's first two calls. A width that compiles again shows as a
call of seconds rather than of a step's time. Inductor's caches are off, so that each variant pays its whole
compile; ``--caches`` leaves them on, as on a bare machine's first run (here, earlier runs' caches and dynamo's
recorded dynamic shapes then answer instead).

- ``dynamic``: ``torch.compile(..., dynamic=True)``, what ``JanusModel`` does;
- ``specialised``: ``dynamic=False``; every width compiles again;
- ``width``: torch's default, with only the cache's width marked dynamic (``maybe_mark_dynamic``).

On a GPU it compiles as ``JanusModel`` does there (``mode="reduce-overhead"``, CUDA graphs).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from arguments import positive_ints, torch_device

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
VARIANTS = ("dynamic", "specialised", "width")
ROOMS = [8, 300, 600]  # cache widths 256, 512 and 768 from the short prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "variants", nargs="*", metavar="VARIANT", help=f"any of {', '.join(VARIANTS)} (default: all)"
    )
    parser.add_argument("--size", choices=["tiny", "pro-1b"], default="pro-1b")
    parser.add_argument("--device", type=torch_device, default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--rooms",
        type=positive_ints,
        default=ROOMS,
        help="free positions after the prompt for each call, comma-separated (default: widths 256, 512, 768)",
    )
    parser.add_argument(
        "--caches", action="store_true", help="leave inductor's caches on, as a first run on a bare machine has"
    )
    args = parser.parse_args()
    if not args.caches:  # before torch is imported: each variant pays its whole compile
        os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}: choose from {', '.join(VARIANTS)}")
    args.variants = args.variants or list(VARIANTS)
    import warnings

    from strokeagent.extras import ExtraMissing, require

    try:
        require("transformers", "benchmarks/compile_time.py", modules=("torch", "transformers"))
    except ExtraMissing as e:
        raise SystemExit(f"error: {e}") from None
    import torch

    warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")
    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    # The model's files are gigabytes at Janus-Pro-1B size: gone when the run ends, however it ends.
    with tempfile.TemporaryDirectory(prefix="compile-time-") as tmp:
        measure(args, Path(tmp))


def measure(args: argparse.Namespace, root: Path) -> None:
    import torch
    from context_reuse import build  # benchmarks/ is this script's folder
    from gpu import janus_description, painting_inputs, prompt_context

    from strokeagent.backends import load_backend

    dtype = "float32" if args.device == "cpu" else "bfloat16"
    folder = build(args.size, root / "janus", args.device)
    model = load_backend(janus_description(folder, root / "janus.toml", args.device, dtype))
    ctx = prompt_context(model)
    mode = "reduce-overhead" if args.device == "cuda" else None
    print(f"{args.size} on {args.device} ({dtype}, torch {torch.__version__}, kernel {platform.release()})", flush=True)
    for variant in args.variants:
        torch._dynamo.reset()
        dynamic = {"dynamic": True, "specialised": False, "width": None}[variant]
        step = torch.compile(model._image_logits, mode=mode, fullgraph=True, dynamic=dynamic)
        seconds = []
        with torch.no_grad():
            for room in args.rooms:  # above 0: a static cache needs room to paint in
                model._kept.clear()  # a new cache of the new width, as a longer context gets
                embeds, mask, positions, cache = painting_inputs(model, ctx, room)
                if variant == "width":
                    torch._dynamo.maybe_mark_dynamic(mask, 1)
                    for layer in cache.layers:
                        torch._dynamo.maybe_mark_dynamic(layer.keys, 2)
                        torch._dynamo.maybe_mark_dynamic(layer.values, 2)
                start = time.perf_counter()
                for i in range(2):
                    step(embeds, mask, positions + i, cache)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                seconds.append(f"width {mask.shape[1]} {time.perf_counter() - start:.1f} s")
        print(f"{variant:>11}: " + ", ".join(seconds), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
