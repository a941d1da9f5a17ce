"""A content-addressed store of PNG files, and atomic writes.

    >>> from PIL import Image
    >>> import tempfile
    >>> store = ArtifactStore(tempfile.mkdtemp())
    >>> ref = store.put(Image.new("RGB", (8, 8), "red"))
    >>> store.open(ref).size
    (8, 8)

An image is saved once under the SHA-256 of its pixels (``pixel_digest``); the
same pixels put twice cost nothing. The address comes from the pixels, not the
PNG bytes, so that a run does not wait for the PNG encoder: ``writing_on`` a
single-thread executor, ``put`` returns at once and the file is encoded and
written there, in the order of the writer's other jobs. A run hands the store
its checkpoint writer, so an image is on disk before any checkpoint that names
it (``strokeagent.runs.checkpoints``). Until then the store serves the image
from memory.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import struct
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from strokeagent.core.state import ImageRef


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The rename is atomic, which is what a killed process needs. ``durable=True``
    also fsyncs, which only a power cut needs, and costs about a millisecond a file.
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_temp(path: Path) -> tuple[int, str]:
    """A new empty file beside ``path``, open for writing: ``(fd, its path)``.

    Created with mode 0o666 and the user's umask, as ``open()`` creates a file (``mkstemp``'s 0600
    would keep a run's outputs from a teammate or a web server). ``O_EXCL`` on a random name keeps
    two writers apart.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


@contextmanager
def new_output_folder(path: Path, *, what: str, taken: str, error: type[Exception]) -> Iterator[None]:
    """Claim ``path`` for a new run, data set or bench; the block makes it and writes its first files.

        >>> with new_output_folder(out, what="run", taken="is not empty", error=RunError):   # doctest: +SKIP
        ...     (out / "images").mkdir(parents=True)

    A ``path`` that holds anything is refused (``already exists and <taken>``), and an ``OSError``
    inside the block becomes one ``error`` line saying the folder cannot be written.
    """
    refused = error(f"output folder {path} already exists and {taken}")
    if path.exists():
        if not path.is_dir():
            raise error(f"output folder {path} is a file, not a folder; choose another --out")
        if any(path.iterdir()):
            raise refused
    claim = path / ".claimed"
    try:
        # Claimed atomically: of two runs started together into one folder, exactly one gets it.
        path.mkdir(parents=True, exist_ok=True)
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        raise refused from None
    except OSError as e:
        raise error(f"cannot write the {what} folder {path}: {e.strerror}; choose a writable --out") from None
    if os.listdir(path) != [claim.name]:  # another claimed it, wrote, and let go between our look and our claim
        claim.unlink(missing_ok=True)
        raise refused
    try:
        yield
    except OSError as e:
        raise error(f"cannot write the {what} folder {path}: {e.strerror}; choose a writable --out") from None
    finally:
        claim.unlink(missing_ok=True)


#: PNG's colour type for each mode written by ``png_bytes`` itself.
_PNG_COLOUR = {"L": 0, "RGB": 2, "RGBA": 6}


@dataclass(frozen=True, slots=True)
class Pixels:
    """An image's mode, size and packed pixels (``Image.tobytes``): immutable bytes, so kept without a copy.

    The store keeps these, not images: ``put`` packs the caller's image once, for its digest, and the same bytes
    serve every later ``open`` and the PNG encoder, so the caller's image is its own again without a copy of it
    (a fresh megabyte costs its page faults: about 0.4 ms for a 512² image inside a run on two cores).
    """

    mode: str
    size: tuple[int, int]
    data: bytes

    @classmethod
    def of(cls, image: Image.Image) -> Pixels:
        return cls(image.mode, image.size, image.tobytes())

    def digest(self) -> str:
        """The SHA-256 of the mode, size and pixels (``pixel_digest``)."""
        digest = hashlib.sha256(f"{self.mode}{self.size}".encode())
        digest.update(self.data)  # not joined to the prefix first: that copies the pixels once more
        return digest.hexdigest()

    def image(self) -> Image.Image:
        """A new image of these pixels: the caller may draw on it."""
        return Image.frombytes(self.mode, self.size, self.data)

    def png(self) -> bytes:
        """``png_bytes`` of these pixels, read in place (L, RGB and RGBA)."""
        width, height = self.size
        header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR[self.mode], 0, 0, 0)  # 8 bits, deflate
        idat = _zlib_parts(memoryview(up_filtered(self)).cast("B"))  # the scanlines themselves, not a copy
        # One join at the end: noise makes a file as large as its pixels, and on the H200's host png_bytes spent
        # 3.4 ms beside its compression, copying and summing them (10.2 ms for 512² noise, compression 6.8).
        return b"".join([b"\x89PNG\r\n\x1a\n", *_chunk(b"IHDR", [header]), *_chunk(b"IDAT", idat), *_chunk(b"IEND", [])])


def png_bytes(image: Image.Image) -> bytes:
    """The PNG file of ``image``, no metadata: the same bytes for the same pixels (with the same zlib; an
    image's address, ``pixel_digest``, does not depend on them).

    L, RGB and RGBA images are encoded here, with PNG's "Up" filter on every row and zlib at level 1,
    compressed in pieces side by side (``zlib_stream``): on two cores about 5 ms for a 512² photo and
    7.5 ms for 512² noise, where Pillow's encoder, which tries every filter on every row on one thread,
    takes 52 and 26 ms at level 6, for files 0-16 % larger than its (``benchmarks/png_encoding.py``).
    A run waits for its final image's file, and eight runs at once encode 48 images, so this is on the
    critical path. Other modes go through Pillow.
    """
    if image.mode not in _PNG_COLOUR:
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=6)
        return buf.getvalue()
    return Pixels.of(image).png()


def up_filtered(pixels: Pixels) -> np.ndarray:
    """An L, RGB or RGBA image's rows as the scanlines ``png_bytes`` compresses: PNG's "Up" filter on every row."""
    height = pixels.size[1]
    rows = np.frombuffer(pixels.data, dtype=np.uint8).reshape(height, -1)  # a view, not a copy
    scanlines = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    scanlines[:, 0] = 2  # "Up": each byte minus the byte above it, modulo 256 (the first row's "above" is 0)
    scanlines[:, 1:] = rows
    scanlines[1:, 1:] -= rows[:-1]
    return scanlines


def _chunk(kind: bytes, body: list[bytes]) -> list[bytes]:
    """A PNG chunk as the parts to join: length, kind, ``body``'s parts, and the CRC of kind and body."""
    crc = zlib.crc32(kind)
    for part in body:
        crc = zlib.crc32(part, crc)
    return [struct.pack(">I", sum(map(len, body))), kind, *body, struct.pack(">I", crc)]


#: ``zlib_stream`` compresses data in pieces of at most this many bytes, side by side.
PIECE_BYTES = 1 << 17


def zlib_stream(data: bytes | memoryview) -> bytes:
    """``data`` as a zlib stream at level 1, compressed in pieces on several threads, as pigz does.

    A run waits for its last image's file, so this is on its critical path: a 512² RGB image is seven
    pieces. Each piece is raw deflate primed with the 32 KiB before it (so it compresses almost as one
    stream does) and ends on a byte boundary, so the pieces join into one stream any zlib reads. The
    pieces depend on the data's length only, not on the machine's cores, so the bytes are the same
    everywhere; data of one piece gives ``zlib.compress(data, 1)``'s bytes.
    """
    return b"".join(_zlib_parts(memoryview(data).cast("B")))


def _zlib_parts(view: memoryview) -> list[bytes]:
    """``zlib_stream``'s bytes, as the parts to join."""
    count = -(-len(view) // PIECE_BYTES)
    if count <= 1:
        return [zlib.compress(view, 1)]
    size = -(-len(view) // count)

    def piece(start: int) -> bytes:
        deflate = zlib.compressobj(1, zlib.DEFLATED, -15, zdict=view[max(0, start - 32768) : start])
        end = zlib.Z_FINISH if start + size >= len(view) else zlib.Z_SYNC_FLUSH
        return deflate.compress(view[start : start + size]) + deflate.flush(end)

    starts = range(0, len(view), size)
    try:  # zlib lets go of the GIL while it compresses and sums
        compressing = [_deflaters().submit(piece, start) for start in starts]
    except RuntimeError:  # the interpreter is shutting down and starts no thread: a writer finishing its queue
        compressing = []
    # The trailer, the whole data's Adler-32, summed here while the pieces compress.
    trailer = struct.pack(">I", zlib.adler32(view))
    pieces = [done.result() for done in compressing] if compressing else [piece(start) for start in starts]
    # The header is what zlib.compress writes at level 1.
    return [b"\x78\x01", *pieces, trailer]


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _deflaters() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            _pool = ThreadPoolExecutor(max_workers=min(8, cores), thread_name_prefix="strokeagent-deflate")
        return _pool


def _forget_deflaters() -> None:
    # A forked child (a process pool's worker) has none of the parent's threads: it makes its own.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_deflaters)


def pixel_digest(image: Image.Image) -> str:
    """The SHA-256 of an image's mode, size and pixels: the same whatever encodes it, a millisecond at 512²."""
    return Pixels.of(image).digest()


class ArtifactStore:
    """PNG files named by the SHA-256 of their pixels, in one folder; written in the background ``writing_on``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.writer: Executor | None = None
        # Images handed to the writer and not yet on disk, by address: ``open`` serves them from here.
        self._pending: dict[str, tuple[Pixels, Future[None]]] = {}
        self._failed: BaseException | None = None
        # The stage after a draft or refine nearly always opens that image: keep the newest one's pixels.
        self._recent: dict[str, Pixels] = {}

    def path(self, ref: ImageRef | str) -> Path:
        sha = ref if isinstance(ref, str) else ref.sha256
        return self.root / f"{sha}.png"

    def put(self, image: Image.Image, meta: dict[str, Any] | None = None) -> ImageRef:
        if self._failed is not None:  # an earlier write failed: no run should go on as if it had not
            raise self._failed
        if image.mode not in _PNG_COLOUR:  # the modes png_bytes writes itself
            image = image.convert("RGB")
        kept = Pixels.of(image)  # its own bytes: the caller may draw on its image once put returns
        sha = kept.digest()
        ref = ImageRef(sha256=sha, width=image.width, height=image.height, meta=meta or {})
        self._recent = {sha: kept}
        if sha in self._pending or self.path(sha).exists():
            return ref
        if self.writer is None:
            atomic_write(self.path(sha), kept.png())
        else:
            self._pending[sha] = (kept, self.writer.submit(self._write, sha, kept))
        return ref

    def _write(self, sha: str, pixels: Pixels) -> None:
        try:
            atomic_write(self.path(sha), pixels.png())
        except BaseException as e:
            self._failed = self._failed or e
            raise
        finally:
            self._pending.pop(sha, None)

    @contextmanager
    def writing_on(self, writer: Executor) -> Iterator[None]:
        """Within the block, ``put`` writes on ``writer``; the block ends with every write finished.

        A write that failed is raised by the next ``put``, ``flush`` or ``read_bytes``, not on the way out.
        """
        self.writer = writer
        try:
            yield
        finally:
            self.writer = None
            self._wait()

    def flush(self) -> None:
        """Wait until every image put so far is on disk; raise the first write that failed."""
        self._wait()
        if self._failed is not None:
            raise self._failed

    def _wait(self) -> None:
        for _, done in list(self._pending.values()):
            done.exception()  # waits; a failure stays in ``_failed``

    def open(self, ref: ImageRef) -> Image.Image:
        """A fresh copy of the pixels: the caller may draw on it."""
        cached = self._recent.get(ref.sha256)
        pending = self._pending.get(ref.sha256)  # one look: the writer may drop it once it is on disk
        if cached is None and pending is not None:
            cached = pending[0]
        if cached is not None:
            return cached.image()
        path = self.path(ref)
        if not path.exists():
            raise FileNotFoundError(f"image {ref.sha256[:12]} is missing from {self.root}")
        with Image.open(path) as im:
            im.load()
            if im.mode not in _PNG_COLOUR:  # a file the store did not write (it writes these modes only)
                return im.copy()
            kept = Pixels.of(im)
        self._recent = {ref.sha256: kept}
        return kept.image()

    def read_bytes(self, ref: ImageRef) -> bytes:
        pending = self._pending.get(ref.sha256)
        if pending is not None:
            pending[1].result()  # its write failing raises here
        return self.path(ref).read_bytes()

    def __contains__(self, ref: ImageRef) -> bool:
        return ref.sha256 in self._pending or self.path(ref).exists()
