"""Critics: score an image against a prompt (and its scene when there is one), and list what is wrong.

    >>> from strokeagent.critics import build_critic
    >>> critic = build_critic({"kind": "sketch"})
    >>> # verdict = await critic.score(canvas, "a photo of two cups")
    >>> # verdict.correct, verdict.score, [v.message for v in verdict.violations]

A critic is one async method, ``score(image, prompt, *, scene=None) -> Verdict``.
``image`` is a ``Canvas`` (pixels plus the meta its maker attached) or a plain
PIL image; ``scene`` is a GenEval metadata row (``SuiteItem``), a ``SceneGraph``,
or ``None`` (the critic reads the prompt itself). Critics are built by kind from
``strokeagent.core.registry.CRITIC_KINDS``:

==============  ==========================================================================
``sketch``      GenEval's rules on a stroke canvas, from its id buffer and pixels
``geneval``     GenEval's rules on any image: a transformers detector + CLIP colours
``clip-score``  cosine similarity of the image and the prompt under CLIP
``vlm-judge``   a text head that looks at the image and answers in a schema
==============  ==========================================================================

``CriticReflector`` turns any critic into the reflect stage of a policy
(``kind = "critic.reflect"``, ``critic = {kind = "sketch"}``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from strokeagent.core.stages import Canvas
from strokeagent.errors import PolicyError
from strokeagent.scene.graph import Predicate

if TYPE_CHECKING:
    from PIL import Image

    from strokeagent.scene.geneval import SuiteItem
    from strokeagent.scene.graph import SceneGraph

ViolationKind = Literal["missing", "count", "color", "position", "extra", "mismatch", "other"]


class Violation(BaseModel):
    """One thing the image gets wrong: ``Violation(kind="count", message="expected cup>=2, found 1", cls="cup")``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ViolationKind
    message: str
    cls: str | None = None


class Verdict(BaseModel):
    """A critic's answer: ``correct`` (the benchmark's yes/no), ``score`` in [0, 1], and the violations.

    ``Verdict(critic="sketch", correct=False, score=0.5, violations=[...])``. A
    correct verdict has no violations; ``details`` holds what the critic saw
    (detections, similarities), as JSON.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    critic: str
    correct: bool
    score: float = Field(ge=0.0, le=1.0)
    violations: list[Violation] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def reason(self) -> str:
        """GenEval's ``reason`` field: the violations, one per line."""
        return "\n".join(v.message for v in self.violations)


@runtime_checkable
class Critic(Protocol):
    async def score(
        self, image: Canvas | Image.Image, prompt: str, *, scene: SuiteItem | SceneGraph | None = None
    ) -> Verdict:
        """Judge ``image`` against ``prompt`` (and ``scene``, when given)."""
        ...


def as_canvas(image: Any) -> Canvas:
    """A ``Canvas`` from a Canvas or a PIL image (no meta)."""
    return image if isinstance(image, Canvas) else Canvas(image, {})


def build_critic(spec: Any, where: str = "critic") -> Critic:
    """A critic from a kind name, a table ``{"kind": ..., **options}``, or a critic object (returned as is)."""
    from strokeagent.core.registry import CRITIC_KINDS

    if isinstance(spec, str):
        spec = {"kind": spec}
    critic = CRITIC_KINDS.build(spec, where) if isinstance(spec, dict) else spec
    if not isinstance(critic, Critic):
        raise PolicyError(
            f"{where}: {type(critic).__name__} is not a critic; it needs `async def score(...)`"
        )
    return critic


def clause_score(n_clauses: int, n_failed: int) -> float:
    """The fraction of a row's clauses that hold: 1.0 when all do (and when there are none)."""
    return 1.0 if n_clauses == 0 else max(0.0, 1.0 - n_failed / n_clauses)


_REASON_KINDS: tuple[tuple[re.Pattern[str], ViolationKind], ...] = (
    (re.compile(r"^expected (?P<cls>.+)>=\d+, found 0$"), "missing"),
    (re.compile(r"^expected (?P<cls>.+)>=\d+, found \d+$"), "count"),
    (re.compile(r"^expected (?P<cls>.+)<\d+, found \d+$"), "extra"),
    (re.compile(r"^no target for (?P<cls>.+) to be "), "position"),
    (re.compile(rf"^expected (?P<cls>.+?) ({'|'.join(get_args(Predicate))}) "), "position"),
)


def violation_from_reason(reason: str, colors: tuple[str, ...] = ()) -> Violation:
    """A typed ``Violation`` from one of GenEval's reason lines."""
    if colors:
        m = re.match(rf"^expected ({'|'.join(colors)}) (?P<cls>.+)>=\d+, found ", reason)
        if m:
            return Violation(kind="color", message=reason, cls=m["cls"])
    for pattern, kind in _REASON_KINDS:
        m = pattern.match(reason)
        if m:
            return Violation(kind=kind, message=reason, cls=m["cls"])
    return Violation(kind="other", message=reason)


__all__ = [
    "Critic",
    "Verdict",
    "Violation",
    "as_canvas",
    "build_critic",
    "clause_score",
    "violation_from_reason",
]
