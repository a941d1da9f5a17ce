"""``sketch.layout``: a layout stage before the draft, GoT-style: the boxes are decided, and written down,
before anything is drawn.

    [loop]
    order = ["plan", "layout", "draft", "reflect", "refine"]
    [stages.layout]
    kind = "sketch.layout"
    [stages.draft]
    kind = "sketch.draft"
    layout = "given"          # the drafter needs the layout: a policy without this stage is refused

It gives a ``SceneLayout`` hand-off (the drafter and refiner place instances in its boxes) and
writes it as a ``Note``, so the trajectory and the film strip show where everything goes.
"""

from __future__ import annotations

from strokeagent.core.stages import TrajectoryView
from strokeagent.core.state import Note, handoffs_of
from strokeagent.sketch.layout import SceneLayout, solve_layout
from strokeagent.sketch.scenes import scene_of_plan, scene_of_prompt


class SketchLayoutStage:
    """Solves the layout of the plan's scene with this stage's seed. Option: ``size`` (the drafter's)."""

    gives = (SceneLayout,)

    def __init__(self, size: int = 512) -> None:
        if not 64 <= size <= 2048:
            raise ValueError(f"size must be from 64 to 2048 px, got {size}")
        self.size = size

    async def run(self, view: TrajectoryView) -> Note:
        given = view.handoff(SceneLayout)
        if given is not None and given.size == self.size:  # one layout per run: later steps keep it
            return Note(text="layout kept from step 1", handoffs=handoffs_of(given))
        graph = scene_of_plan(view.plan, view.prompt) if view.plan is not None else scene_of_prompt(view.prompt)
        layout = SceneLayout.of(solve_layout(graph, self.size, seed=view.seed))
        where = "; ".join(
            f"{graph.object(oid).cls} at {tuple(boxes[0])}" for oid, boxes in layout.boxes.items() if boxes
        )
        return Note(text=f"layout: {where}" if where else "layout: nothing to place", handoffs=handoffs_of(layout))
