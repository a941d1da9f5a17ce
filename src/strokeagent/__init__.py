"""strokeagent: process-driven image generation — plan, draft, reflect, refine.

    >>> import strokeagent
    >>> traj = strokeagent.generate("a red apple left of a blue cup", seed=0)   # doctest: +SKIP
    >>> [step.plan.instruction for step in traj.steps]                           # doctest: +SKIP

Names are imported on first use, so ``import strokeagent`` stays fast and never
pulls in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "generate": "strokeagent.runs.api",
    "agenerate": "strokeagent.runs.api",
    "astream": "strokeagent.runs.api",
    "resume": "strokeagent.runs.api",
    "aresume": "strokeagent.runs.api",
    "StageEvent": "strokeagent.runs.api",
    "load_policy": "strokeagent.core.policy",
    "Policy": "strokeagent.core.policy",
    "LoopSpec": "strokeagent.core.policy",
    "StageSpec": "strokeagent.core.policy",
    "StageNodes": "strokeagent.core.loop",
    "compile_loop": "strokeagent.core.loop",
    "build_graph": "strokeagent.core.loop",
    "Plan": "strokeagent.core.state",
    "Reflection": "strokeagent.core.state",
    "Note": "strokeagent.core.state",
    "State": "strokeagent.core.state",
    "StageUsage": "strokeagent.core.state",
    "Handoff": "strokeagent.core.state",
    "handoffs_of": "strokeagent.core.state",
    "Step": "strokeagent.core.state",
    "Trajectory": "strokeagent.core.state",
    "ImageRef": "strokeagent.core.state",
    "Canvas": "strokeagent.core.stages",
    "Stage": "strokeagent.core.stages",
    "Selector": "strokeagent.core.stages",
    "TrajectoryView": "strokeagent.core.stages",
    "Planner": "strokeagent.core.stages",
    "Drafter": "strokeagent.core.stages",
    "Reflector": "strokeagent.core.stages",
    "Refiner": "strokeagent.core.stages",
    "ArtifactStore": "strokeagent.core.store",
    "StrokeAgentError": "strokeagent.errors",
}

__all__ = [  # noqa: RUF022 - grouped by concept
    "generate",
    "agenerate",
    "astream",
    "resume",
    "aresume",
    "StageEvent",
    "load_policy",
    "Policy",
    "LoopSpec",
    "StageSpec",
    "StageNodes",
    "compile_loop",
    "build_graph",
    "Plan",
    "Reflection",
    "Note",
    "State",
    "StageUsage",
    "Handoff",
    "handoffs_of",
    "Step",
    "Trajectory",
    "ImageRef",
    "Canvas",
    "Stage",
    "Selector",
    "TrajectoryView",
    "Planner",
    "Drafter",
    "Reflector",
    "Refiner",
    "ArtifactStore",
    "StrokeAgentError",
    "__version__",
]
assert set(__all__) == {*_EXPORTS, "__version__"}

if TYPE_CHECKING:
    from strokeagent.core.loop import StageNodes, build_graph, compile_loop
    from strokeagent.core.policy import LoopSpec, Policy, StageSpec, load_policy
    from strokeagent.core.stages import (
        Canvas,
        Drafter,
        Planner,
        Refiner,
        Reflector,
        Selector,
        Stage,
        TrajectoryView,
    )
    from strokeagent.core.state import (
        Handoff,
        ImageRef,
        Note,
        Plan,
        Reflection,
        StageUsage,
        State,
        Step,
        Trajectory,
        handoffs_of,
    )
    from strokeagent.core.store import ArtifactStore
    from strokeagent.errors import StrokeAgentError
    from strokeagent.runs.api import StageEvent, agenerate, aresume, astream, generate, resume


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'strokeagent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
