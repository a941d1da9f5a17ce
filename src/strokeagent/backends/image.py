"""The image backend protocol: typed requests, a batched call, and a micro-batcher.

    >>> r = ImageRequest(prompt="a red apple", width=64, height=64, steps=4, seed=7)
    >>> r.task
    'text-to-image'
    >>> ImageRequest(prompt="make it blue", image=Image.new("RGB", (64, 64)), edit=True).task
    'edit'

A backend takes a list of requests and returns one image per request, in
order. Requests whose shapes agree (same task, size, denoising steps, guidance:
``ImageRequest.shape``) run as one pipeline call, each with its own seeded
generator, so the same seed gives the same picture whether it ran alone or in
a batch (up to the last bit of floating point: see ``tests/test_image_backends.py``).

``MicroBatcher`` is how concurrent callers (several runs in one process)
end up in one call: it holds requests only while more callers are expected,
for at most a share of a call's time, then hands the whole lot to a
synchronous ``run`` on its own launcher thread.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image

from strokeagent.core.store import png_bytes
from strokeagent.core.threads import OwnThread
from strokeagent.errors import StrokeAgentError

Task = Literal["text-to-image", "image-to-image", "inpaint", "edit"]
TASKS: tuple[Task, ...] = ("text-to-image", "image-to-image", "inpaint", "edit")


class ImageBackendError(StrokeAgentError):
    """An image backend failed (a server down, a pipeline error): names the backend and what to do."""


@dataclass(frozen=True)
class ImageRequest:
    """One image to make.

    No ``image``: text-to-image. An ``image`` with ``edit=True``: instruction
    editing (``prompt`` is the instruction). An ``image`` and a ``mask``:
    inpainting (white = repaint). An ``image`` alone: image-to-image at
    ``strength`` (0 keeps it, 1 ignores it). ``guidance=None`` keeps the
    pipeline's default.
    """

    prompt: str
    negative_prompt: str | None = None
    width: int = 512
    height: int = 512
    steps: int = 30
    guidance: float | None = None
    seed: int = 0
    image: Image.Image | None = field(default=None, compare=False)
    mask: Image.Image | None = field(default=None, compare=False)
    strength: float = 0.6
    edit: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError("an image request needs a non-empty prompt")
        if self.width < 8 or self.height < 8 or self.width % 8 or self.height % 8:
            raise ValueError(
                f"width and height must be multiples of 8 from 8 up, got {self.width}×{self.height}"
            )
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if not 0 <= self.seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {self.seed}")
        if (self.mask is not None or self.edit) and self.image is None:
            raise ValueError("a mask or an edit needs an input image")
        if self.mask is not None and self.edit:
            raise ValueError("a request is either an edit or an inpainting (mask), not both")

    @property
    def task(self) -> Task:
        if self.image is None:
            return "text-to-image"
        if self.edit:
            return "edit"
        return "inpaint" if self.mask is not None else "image-to-image"

    @property
    def denoising_steps(self) -> int:
        """The steps a pipeline runs: image-to-image and inpainting run the last ``int(steps * strength)``.

        That is diffusers' ``get_timesteps`` in the Stable Diffusion (1.x, 2.x, XL) pipelines.
        """
        if self.task in ("image-to-image", "inpaint"):
            return min(int(self.steps * self.strength), self.steps)
        return self.steps

    def shape(self, exact_strength: bool = False) -> tuple[Any, ...]:
        """Requests with equal shapes can share one pipeline call.

        Strength counts only through the steps it leaves to run: in the Stable Diffusion pipelines it sets
        where denoising starts (``denoising_steps`` from the end, the same timestep for the same count) and,
        at exactly 1, that inpainting starts from pure noise; nothing else. So strengths 0.5 and 0.52 at 10
        steps (5 steps each) share a call run at either strength, with the same result for both.
        ``exact_strength=True`` keys on the strength itself, for pipelines where it does more (the
        flow-matching ones start at ``int(steps - steps * strength)`` instead, for one).
        """
        strength: Any = None
        if self.task in ("image-to-image", "inpaint"):
            strength = self.strength if exact_strength else self.strength == 1.0
        return (
            self.task,
            self.width,
            self.height,
            self.steps,
            self.denoising_steps,
            self.guidance,
            strength,
            self.negative_prompt is None,
        )

    # -- the wire format of the HTTP service --------------------------------

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Image.Image):
                value = encode_png(value)
            if value is not None:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageRequest:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown request field {unknown[0]!r}; known: {', '.join(sorted(known))}")
        values = dict(data)
        for key in ("image", "mask"):
            if values.get(key) is not None:
                values[key] = decode_png(values[key])
        return cls(**values)


def encode_png(image: Image.Image) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")


def decode_png(data: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        image.load()
    except Exception as e:
        raise ValueError(f"not a base64 PNG image: {e}") from None
    return image


@runtime_checkable
class ImageBackend(Protocol):
    """What stages call: ``await backend.generate([request, ...])`` → one image per request."""

    name: str
    tasks: frozenset[str]

    async def generate(self, requests: Sequence[ImageRequest]) -> list[Image.Image]: ...


def require_task(backend: Any, task: Task, where: str) -> None:
    """Refuse (at policy load) a backend that cannot do what a stage will ask of it."""
    tasks = getattr(backend, "tasks", frozenset())
    if task not in tasks:
        can = ", ".join(sorted(tasks)) or "nothing"
        raise ValueError(
            f"{where}: backend {backend.name} cannot do {task} (it can do {can}); pick another backend"
        )


def group_by_shape(requests: Sequence[ImageRequest], exact_strength: bool = False) -> list[list[int]]:
    """Indices of ``requests`` grouped by shape (``ImageRequest.shape``), each group in request order."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(r.shape(exact_strength), []).append(i)
    return list(groups.values())


@dataclass
class BatchStats:
    """What the batcher did: for tests and the benchmark. One entry per batch in each list."""

    calls: int = 0  # calls to ``run``
    requests: int = 0
    sizes: list[int] = field(default_factory=list)  # requests
    callers: list[int] = field(default_factory=list)  # ``submit`` calls with a request in the batch
    waits: list[float] = field(default_factory=list)  # seconds held back for company before it ran
    # When each batch's call began (``time.perf_counter``) and how long it ran, timed on the launcher thread:
    # between one call's end and the next one's start the device had nothing to do from this batcher.
    starts: list[float] = field(default_factory=list)
    runs: list[float] = field(default_factory=list)


class MicroBatcher(OwnThread):
    """Collects requests from concurrent callers, then runs them as one batch.

        batcher = MicroBatcher(backend.run, window_s=0.05, max_batch=8)
        image, = await batcher.submit([request])

    ``run`` is synchronous (a pipeline call) and runs on the batcher's own
    launcher thread (``OwnThread``: what a GPU warms up stays warm across calls
    and event loops), one batch at a time; requests that arrive meanwhile wait
    for the next batch. Nor does it queue behind other work sent to threads
    (stages, writes).

    The wait adapts to the load. A batch goes at once when it holds
    ``max_batch`` requests, or when no more callers are expected; otherwise it
    waits for them, at most ``share`` of the last batch's run time (a GPU call
    of a second may wait a few tens of milliseconds for company, a call of a
    millisecond waits for nobody) and never more than ``window_s``; the first
    batch, with nothing to go by, waits ``window_s``. Callers (``submit``
    calls) are counted, not requests: one caller's four candidates are not
    four callers to wait for.

    When more callers are waiting than expected, the load is growing (runs
    that start together arrive a few milliseconds apart): the batch waits
    while they keep coming, each within that same longest wait of the last.

    How many are expected: the most callers one *round* held over the last
    ``memory`` batches, where a round is a batch and the callers of the next
    batch that arrived while it ran (they missed it by a hair). Counting only
    the batches themselves settles into a convoy: eight trajectories whose
    eighth is a moment late run as batches of seven and one forever, each
    batch expecting the seven it saw. So one trajectory alone never waits
    (its rounds hold one caller), eight wait for the eighth, and when a caller
    drops out the others wait in vain for at most ``memory`` batches.
    """

    thread_name = "launcher"

    def __init__(
        self,
        run: Callable[[list[ImageRequest]], list[Image.Image]],
        window_s: float = 0.05,
        max_batch: int = 8,
        memory: int = 8,
        share: float = 0.25,
    ) -> None:
        if window_s < 0 or max_batch < 1 or memory < 1 or share < 0:
            raise ValueError("batch window and share must be >= 0, and max_batch and memory >= 1")
        self._run = run
        self.window_s = window_s
        self.max_batch = max_batch
        self.share = share
        self.stats = BatchStats()
        self._rounds: deque[int] = deque(maxlen=memory)  # callers per round, newest last
        self._submits = 0  # numbers each submit: a caller's id in ``_pending``
        self._late: set[int] = set()  # callers that arrived while a batch ran
        self._running = False
        self._last_arrival = 0.0  # time.monotonic() of the last submit
        self._pending: list[tuple[ImageRequest, asyncio.Future, int]] = []
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def expected_callers(self) -> int:
        """How many callers a batch waits for: the most a recent round held (``max_batch`` before any)."""
        return min(max(self._rounds, default=self.max_batch), self.max_batch)

    def longest_wait(self) -> float:
        """The most a batch waits for the callers it expects: ``window_s``, or less after a short run."""
        if not self.stats.runs:
            return self.window_s
        return min(self.window_s, self.share * self.stats.runs[-1])

    async def submit(self, requests: Sequence[ImageRequest]) -> list[Image.Image]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (asyncio.run per CLI call): start afresh
            self._loop, self._pending, self._worker, self._running = loop, [], None, False
            self._late = set()
            self._arrived = asyncio.Event()
        self._submits += 1
        self._last_arrival = time.monotonic()
        if self._running:
            self._late.add(self._submits)
        futures = [loop.create_future() for _ in requests]
        self._pending.extend((r, f, self._submits) for r, f in zip(requests, futures, strict=True))
        self._arrived.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return list(await asyncio.gather(*futures))

    def _timed(self, requests: list[ImageRequest]) -> list[Image.Image]:
        """``run``, its start and length recorded in ``stats`` (the last length also bounds the next wait)."""
        start = time.perf_counter()
        try:
            return self._run(requests)
        finally:
            self.stats.starts.append(start)
            self.stats.runs.append(time.perf_counter() - start)

    async def _drain(self) -> None:
        while self._pending:
            start = time.monotonic()
            longest = self.longest_wait()
            while len(self._pending) < self.max_batch:
                callers, expected = len({caller for *_, caller in self._pending}), self.expected_callers()
                if callers == expected:
                    break
                # Fewer than expected: wait for the others, `longest` from the first. More than expected: the
                # load is growing (runs starting together), so wait while callers keep coming, `longest` from the
                # last: a burst of eight arriving over a few milliseconds is one batch, not seven and one.
                deadline = start + longest if callers < expected else self._last_arrival + longest
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
            waited = time.monotonic() - start
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            ids = {caller for *_, caller in batch}
            callers = len(ids)
            if self._rounds:  # those that arrived while the last batch ran belong to its round
                self._rounds[-1] += len(ids & self._late)
            self._late -= ids
            self._rounds.append(callers)
            self.stats.calls += 1
            self.stats.requests += len(batch)
            self.stats.sizes.append(len(batch))
            self.stats.callers.append(callers)
            self.stats.waits.append(waited)
            self._running = True
            try:
                images = await self.on_own_thread(self._timed, [r for r, *_ in batch])
            except Exception as e:  # every waiting caller learns why
                for _, fut, _ in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            finally:
                self._running = False
            for (_, fut, _), image in zip(batch, images, strict=True):
                if not fut.done():
                    fut.set_result(image)
