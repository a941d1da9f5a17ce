"""What writing an image costs: the project's PNG encoder (``png_bytes``) against Pillow's.

    $ python benchmarks/png_encoding.py        # ~10 s

A run writes every image it makes as a PNG file, and waits for its final one; eight runs at once write
48. Measured on 512² noise (what random-weight pipelines paint, ``benchmarks/gpu.py``), a photo
(matplotlib's ``grace_hopper.jpg``, resized; skipped without matplotlib) at 512² and 1024², and a
gradient: milliseconds to encode (best of 10), the file's size, and whether it decodes to the same pixels.

Measured on the project's 2-core machine, 2026-11-27 (Pillow 13.0, zlib 1.2.13), png_bytes against Pillow
at level 6 (its default) and level 1: 512² noise 12.0 ms (24.8, 23.3), the photo 8.1 ms at 512² (49.9, 14.9)
and 29.5 ms at 1024² (226.0, 51.6), the gradient 0.9 ms (4.2, 3.3); files the same size as Pillow's for
noise, 7 % (512²) and 16 % (1024²) larger for the photo, 8 KB against 3 KB for the gradient.
Later that day, png_bytes compressing in pieces on threads (``zlib_stream``; the same machine, two
cores): noise 7.5 ms, the photo 5.4 ms at 512² and 16.8 ms at 1024², the gradient 0.9 ms, files as before
(Pillow 25.8, 51.8, 231.9 and 4.3 ms at level 6 in the same run).
On an NVIDIA H200's host (16 CPUs, 2026-11-27, an untimed diagnostic beside ``gpu.py``): png_bytes 10.2 ms for
512² noise, of which compressing in pieces 6.8 ms (one piece 3.2 ms, one stream 20.8 ms, Pillow at level 1
46.7 ms). The 3.4 ms beside the compression were copies and sums over the whole file; png_bytes now joins
the file once and sums its Adler-32 while the pieces compress (same bytes): on the 2-core machine, two runs
each, interleaved, noise 7.3-7.4 ms (7.5-7.7 before), the photo 4.9-5.2 (5.3) and 15.6-16.2 (16.5-16.6), the
gradient 0.8-1.0 (1.1-1.2). Not measured on the H200's host yet.
"""

from __future__ import annotations

import io
import time
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from strokeagent.core.store import pixel_digest, png_bytes


def pillow(level: int) -> Callable[[Image.Image], bytes]:
    def encode(image: Image.Image) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=level)
        return buf.getvalue()

    return encode


def images() -> dict[str, Image.Image]:
    out = {"noise 512²": Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8))}
    try:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            photo = Image.open(f).convert("RGB")
        out["photo 512²"] = photo.resize((512, 512))
        out["photo 1024²"] = photo.resize((1024, 1024))
    except ImportError:
        print("matplotlib is not installed: no photo (pip install -e '.[bench]')")
    ramp = np.add.outer(np.arange(512), np.arange(512)) // 4
    out["gradient 512²"] = Image.fromarray(np.stack([ramp, ramp[::-1], ramp.T], axis=-1).astype(np.uint8))
    return out


def best_ms(encode: Callable[[Image.Image], bytes], image: Image.Image, repeats: int = 10) -> tuple[float, bytes]:
    data = encode(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        encode(image)
        times.append(time.perf_counter() - start)
    return min(times) * 1000, data


def main() -> None:
    encoders = {"png_bytes": png_bytes, "Pillow level 6": pillow(6), "Pillow level 1": pillow(1)}
    pictures = images()
    print(f"zlib {zlib.ZLIB_RUNTIME_VERSION}; milliseconds (best of 10), file size, decodes to the same pixels")
    print(f"{'image':<14}" + "".join(f"{name:>26}" for name in encoders))
    for label, image in pictures.items():
        cells = []
        for encode in encoders.values():
            ms, data = best_ms(encode, image)
            with Image.open(io.BytesIO(data)) as decoded:
                same = pixel_digest(decoded.convert(image.mode)) == pixel_digest(image)
            cells.append(f"{ms:7.1f} ms {len(data) / 1000:6.0f} KB {'same' if same else 'DIFFERENT'}")
        print(f"{label:<14}" + "".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    main()
