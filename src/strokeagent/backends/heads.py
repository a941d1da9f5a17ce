"""The text-head interface: a model that reads messages (and images) and answers in a schema.

    >>> from pydantic import BaseModel
    >>> class Answer(BaseModel):
    ...     text: str
    >>> # answer = await head.chat([{"role": "user", "content": "hi"}], schema=Answer)

How a head is reached (an OpenAI-compatible server, local transformers, a
scripted double in ``strokeagent.testing``) is the backend's business; stages
only see ``chat``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

if TYPE_CHECKING:
    from PIL import Image

T = TypeVar("T", bound=BaseModel)


@runtime_checkable
class TextHead(Protocol):
    async def chat(
        self,
        messages: list[dict[str, Any]],
        images: Sequence[Image.Image] = (),
        *,
        schema: type[T],
    ) -> T:
        """Answer ``messages`` (with ``images`` attached to the last user turn) as a validated ``schema``."""
        ...
