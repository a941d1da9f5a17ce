"""The sketch critic: GenEval's rules on a stroke canvas, read from its pixels alone.

    >>> from strokeagent.sketch.document import Drawn, SketchDocument
    >>> doc = SketchDocument(size=128).add(Drawn(iid=0, object_id="o0", cls="cup",
    ...     supercategory="kitchen", rgb=(40, 90, 220), box=(10, 10, 60, 60)))
    >>> import asyncio
    >>> verdict = asyncio.run(SketchCritic().score(doc, "a photo of two cups"))
    >>> verdict.correct, verdict.reason
    (False, 'expected cup>=2, found 1')

The canvas's own "detector" is ``strokeagent.critics.canvas_detector``, used by
``strokeagent.critics.canvas``: objects are segmented from the pixels and
recognised by rendering every class's glyph into their boxes; an instance counts
when half of it is visible; its box is the bounds of its visible pixels; its
colour is its fill's nearest named colour. No weights, no randomness: the critic
a bench uses for the sketch policies. ``image`` is a stroke canvas: a ``Canvas``
whose meta marks it as one (judged from its pixels; the document is not read),
or a ``SketchDocument`` (rendered, then judged from those pixels). To judge any
PNG by its pixels, use ``strokeagent judge`` (``critics.judge_file``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from strokeagent.critics import Verdict, clause_score, violation_from_reason
from strokeagent.critics.rules import COLORS


def is_sketch(image: Any) -> bool:
    """Whether ``image`` carries a stroke-canvas document the sketch critic can read."""
    from strokeagent.sketch.document import META_KEY, SketchDocument

    meta = getattr(image, "meta", None)
    return isinstance(image, SketchDocument) or (isinstance(meta, dict) and META_KEY in meta)


class SketchCritic:
    """GenEval's verdict on a stroke canvas; needs no options."""

    name = "sketch"

    async def score(self, image: Any, prompt: str, *, scene: Any = None) -> Verdict:
        if not is_sketch(image):
            raise ValueError(
                "the sketch critic reads stroke canvases only (an image with its sketch document); "
                "use the geneval critic for other images"
            )
        return await asyncio.to_thread(self._judge, image, prompt, scene)

    def _judge(self, image: Any, prompt: str, scene: Any) -> Verdict:
        from strokeagent.critics.canvas import judge
        from strokeagent.critics.geneval import rows_of

        _, include, exclude = rows_of(prompt, scene)
        correct, reasons = judge({"include": include, "exclude": exclude}, image)
        return Verdict(
            critic=self.name,
            correct=correct,
            score=clause_score(len(include) + len(exclude), len(reasons)),
            violations=[violation_from_reason(r, COLORS) for r in reasons],
        )
