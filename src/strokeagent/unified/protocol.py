"""What a unified model must do: context operations on its own KV cache.

    >>> ctx = Context()
    >>> ctx.usage.prefilled, ctx.length
    (0, 0)

A ``Context`` is one conversation held inside the model: its KV cache, the
logits of the last position, and running counts. Each operation prefills only
what it adds, so a stage that appends a hundred tokens to a thousand-token
history costs a hundred tokens, not eleven hundred. ``Context.usage`` counts
what went through the model: ``prefilled`` (tokens fed as a chunk: added text,
image patches) and ``generated`` (tokens the model produced, text or image).

Everything is synchronous and deterministic for a given seed; the process
stages run it in a worker thread, or on the one thread a model names as its
``executor`` (a ``concurrent.futures.Executor``;
``strokeagent.core.threads.OwnThread`` gives a model one: what a GPU warms up
belongs to a thread). Operations feed the model in a fixed pattern (a chunk
per ``add_*`` call, one forward per generated token), and
``add_tokens`` replays a ``generate_text`` result in that same pattern, so a
context rebuilt from a trajectory holds bit-identical state to the live one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL import Image

StopReason = Literal["stop", "eos", "image", "length"]


class ContextFull(Exception):
    """A model's context has no room for what a stage would add: the process stages end the run there."""


@dataclass
class Usage:
    """Tokens that went through the model: chunk-prefilled, and generated one by one."""

    prefilled: int = 0
    generated: int = 0

    def since(self, before: Usage) -> Usage:
        return Usage(self.prefilled - before.prefilled, self.generated - before.generated)


@dataclass
class Context:
    """One shared context. ``state`` is the adapter's own (a KV cache and last logits)."""

    length: int = 0  # tokens held in the cache
    usage: Usage = field(default_factory=Usage)
    state: Any = None

    def snapshot(self) -> Usage:
        return Usage(self.usage.prefilled, self.usage.generated)


@dataclass(frozen=True)
class TextOutput:
    """What ``generate_text`` wrote: the text, its token ids (all now in the context) and why it stopped.

    ``stop_reason``: ``"stop"`` (a stop string was written, ``matched`` says which),
    ``"eos"`` (the model ended its turn), ``"image"`` (the model opened an image
    where text was expected; the image-start token is *not* in the context) or
    ``"length"`` (``max_new_tokens`` ran out).
    """

    text: str
    ids: tuple[int, ...]
    stop_reason: StopReason
    matched: str | None = None


@runtime_checkable
class UnifiedModel(Protocol):
    """A model that writes text and paints images inside one context."""

    #: The side of the square images it paints (None: any ``size`` it is asked for).
    native_size: int | None

    def new_context(self) -> Context:
        """An empty context (the model's beginning-of-sequence, if it has one, is added and counted)."""
        ...

    def add_text(self, ctx: Context, text: str) -> None:
        """Prefill ``text`` as one chunk."""
        ...

    def add_image(self, ctx: Context, image: Image.Image) -> None:
        """Prefill an image, wrapped in the model's vision-start and vision-end markers, as one chunk."""
        ...

    def add_tokens(self, ctx: Context, ids: tuple[int, ...]) -> None:
        """Feed ids one forward each, exactly as ``generate_text`` fed them (replay)."""
        ...

    def generate_text(
        self, ctx: Context, *, stop: tuple[str, ...], max_new_tokens: int, seed: int, temperature: float
    ) -> TextOutput:
        """Write text after the context until a stop string, end of turn, an image start, or the cap."""
        ...

    def generate_image(
        self, ctx: Context, *, seed: int, guidance: float, steps: int | None = None, size: int | None = None
    ) -> Image.Image:
        """Paint an image conditioned on the context. The context itself is left unchanged
        (the image is painted in a fork); add the result with ``add_image`` to keep it."""
        ...

    def fork(self, ctx: Context) -> Context:
        """An independent copy: what is added to one is not seen by the other."""
        ...

    def drop(self, ctx: Context) -> None:
        """Free the context's cache."""
        ...
