"""``sketch.plan``: the prompt's scene graph, ordered into increments, one per step.

    >>> planner = SketchPlanner()
    >>> # plan = await planner.plan(view)
    >>> # plan.instruction, plan.handoffs["increment"]["object_ids"] -> ('Draw a teddy bear.', ['o1'])

The increments are ``strokeagent.scene.plan_increments``: layout, main objects,
related objects, attributes, as the paper builds its data. The plan gives the
whole graph and this step's increment as typed hand-offs (``SceneGraph``,
``Increment``) to the drafter and reflector.
"""

from __future__ import annotations

from strokeagent.core.stages import TrajectoryView
from strokeagent.core.state import Plan, handoffs_of
from strokeagent.scene import Increment, SceneGraph
from strokeagent.sketch.scenes import increments_of_prompt, scene_of_prompt


class SketchPlanner:
    """Plans one increment per step. Option: ``max_steps`` (increments are merged to fit)."""

    gives = (SceneGraph, Increment)

    def __init__(self, max_steps: int = 5) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.max_steps = max_steps

    async def plan(self, view: TrajectoryView) -> Plan:
        graph = scene_of_prompt(view.prompt)
        increments = increments_of_prompt(view.prompt, self.max_steps)
        if not increments:
            return Plan(
                instruction="Nothing to draw.",
                description="",
                done=True,
                notes=list(graph.dropped),
                handoffs=handoffs_of(graph),
            )
        i = min(view.step, len(increments) - 1)
        inc = increments[i]
        return Plan(
            instruction=inc.instruction,
            description=inc.description,
            done=i == len(increments) - 1,
            notes=list(graph.dropped),
            handoffs=handoffs_of(graph, inc),
        )
