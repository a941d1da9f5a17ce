"""The embedded default policy: scene-graph plans drawn, inspected and fixed on a stroke canvas.

    >>> sorted(STAGE_KINDS)
    ['sketch.draft', 'sketch.layout', 'sketch.plan', 'sketch.refine', 'sketch.reflect']

Modules, in the order a newcomer might read them: ``document`` (what a canvas
holds), ``glyphs`` (drawing it, with its id buffer), ``measure`` (seeing it),
``layout`` (where things go), ``mistakes`` (how drafts go wrong), the four
stages (``planner``, ``drafter``, ``reflector``, ``refiner``).
GenEval's verdict on a finished canvas is ``strokeagent.critics.canvas``.
"""

from strokeagent.sketch.document import Drawn, SketchDocument
from strokeagent.sketch.drafter import SketchDrafter
from strokeagent.sketch.glyphs import render
from strokeagent.sketch.layout import SceneLayout, solve_layout
from strokeagent.sketch.layout_stage import SketchLayoutStage
from strokeagent.sketch.planner import SketchPlanner
from strokeagent.sketch.refiner import SketchRefiner
from strokeagent.sketch.reflector import SketchReflector

STAGE_KINDS = {
    "sketch.plan": SketchPlanner,
    "sketch.draft": SketchDrafter,
    "sketch.reflect": SketchReflector,
    "sketch.refine": SketchRefiner,
    "sketch.layout": SketchLayoutStage,
}

__all__ = [
    "STAGE_KINDS",
    "SceneLayout",
    "SketchLayoutStage",
    "Drawn",
    "SketchDocument",
    "SketchDrafter",
    "SketchPlanner",
    "SketchRefiner",
    "SketchReflector",
    "render",
    "solve_layout",
]
