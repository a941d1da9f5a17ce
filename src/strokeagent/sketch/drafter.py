"""``sketch.draft``: draw this step's increment on the stroke canvas, with realistic mistakes.

    >>> drafter = SketchDrafter(mistake_rate=0.0)
    >>> # canvas = await drafter.draft(view, plan); canvas.meta["sketch"]["instances"][0]["cls"]

Step 0 starts a fresh canvas; later steps open the newest canvas and *add* this
increment's objects — what is already drawn stays as it is. With no planner
(the plan is the prompt itself, ``done``, no meta) the whole prompt is drawn in
one pass, and, by the mistake model in ``mistakes``, more goes wrong.
All randomness comes from ``numpy.random.default_rng(view.seed)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Plan
from strokeagent.sketch.document import SketchDocument
from strokeagent.sketch.glyphs import render
from strokeagent.sketch.layout import SceneLayout
from strokeagent.sketch.mistakes import MISTAKE_KINDS, add_mistaken, applicable, mistake_probability
from strokeagent.sketch.scenes import layout_for, needs_for, place_instance, planned_ids, scene_of_plan

#: The largest canvas side: a canvas is drawn and inspected in memory, four bytes a pixel and more.
MAX_SIZE = 2048


def check_mistake_options(rate: float, crowding: float, mistakes: Sequence[str]) -> tuple[str, ...]:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"mistake_rate must be between 0 and 1, got {rate}")
    if crowding < 0:
        raise ValueError(f"crowding must be 0 or more, got {crowding}")
    unknown = [m for m in mistakes if m not in MISTAKE_KINDS]
    if unknown:
        raise ValueError(f"unknown mistakes {unknown}; choose from {list(MISTAKE_KINDS)}")
    return tuple(mistakes)


class SketchDrafter:
    """Draws plans as stroke glyphs placed by the layout solver.

    Options: ``size`` (canvas side, px), ``mistake_rate`` (per instance when
    drawn alone), ``crowding`` (how much each other instance in the pass adds),
    ``mistakes`` (which kinds may happen), ``layout``: ``"solve"`` (its own, unless
    a layout stage gave one) or ``"given"`` (it needs a ``SceneLayout`` from an
    earlier stage, and a policy without one is refused when it loads).
    """

    def __init__(
        self,
        size: int = 512,
        mistake_rate: float = 0.25,
        crowding: float = 0.25,
        mistakes: Sequence[str] = MISTAKE_KINDS,
        layout: str = "solve",
    ) -> None:
        if not 64 <= size <= MAX_SIZE:
            raise ValueError(f"size must be from 64 to {MAX_SIZE} px, got {size}")
        if layout not in ("solve", "given"):
            raise ValueError(f'layout must be "solve" or "given", got {layout!r}')
        self.layout = layout
        self.needs = (SceneLayout,) if layout == "given" else ()
        self.size = size
        self.mistake_rate = mistake_rate
        self.crowding = crowding
        self.mistakes = check_mistake_options(mistake_rate, crowding, mistakes)

    async def draft(self, view: TrajectoryView, plan: Plan) -> Canvas:
        graph = scene_of_plan(plan, view.prompt)
        if view.canvas is None:
            doc = SketchDocument(size=self.size, background=graph.background)
        else:
            doc = SketchDocument.from_meta(view.open(view.canvas).meta)
            if doc.background is None and graph.background:
                doc = doc.model_copy(update={"background": graph.background})
        expected = planned_ids(view, plan, graph)
        already = {d.object_id for d in doc.instances}
        todo = [
            (graph.object(oid), i)
            for oid in expected
            if oid not in already
            for i in range(graph.object(oid).count)
        ]
        layout = layout_for(view, graph, doc.size)
        rng = np.random.default_rng(view.seed)
        p = mistake_probability(len(todo), self.mistake_rate, self.crowding)
        among = set(expected)
        for obj, index in todo:
            drawn = place_instance(graph, obj, index, doc, layout, among)
            assert drawn is not None  # not strict: always somewhere
            slipped = rng.random() < p
            kinds = applicable(self.mistakes, doc, needs := needs_for(graph, obj, doc, among))
            if slipped and kinds:
                doc = add_mistaken(doc, kinds[int(rng.integers(len(kinds)))], drawn, needs, rng)
            else:
                doc = doc.add(drawn)
        image, _ = render(doc)
        return Canvas(image, doc.to_meta())
