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
    "generate": "strokeagent.run",
    "agenerate": "strokeagent.run",
    "astream": "strokeagent.run",
    "resume": "strokeagent.run",
    "aresume": "strokeagent.run",
    "StageEvent": "strokeagent.run",
    "load_policy": "strokeagent.policy",
    "Policy": "strokeagent.policy",
    "LoopSpec": "strokeagent.loop",
    "StageNodes": "strokeagent.loop",
    "compile_loop": "strokeagent.loop",
    "build_graph": "strokeagent.loop",
    "Plan": "strokeagent.state",
    "Reflection": "strokeagent.state",
    "Step": "strokeagent.state",
    "Trajectory": "strokeagent.state",
    "ImageRef": "strokeagent.state",
    "Canvas": "strokeagent.stages",
    "TrajectoryView": "strokeagent.stages",
    "Planner": "strokeagent.stages",
    "Drafter": "strokeagent.stages",
    "Reflector": "strokeagent.stages",
    "Refiner": "strokeagent.stages",
    "ArtifactStore": "strokeagent.store",
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
    "StageNodes",
    "compile_loop",
    "build_graph",
    "Plan",
    "Reflection",
    "Step",
    "Trajectory",
    "ImageRef",
    "Canvas",
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
    from strokeagent.errors import StrokeAgentError
    from strokeagent.loop import LoopSpec, StageNodes, build_graph, compile_loop
    from strokeagent.policy import Policy, load_policy
    from strokeagent.run import StageEvent, agenerate, aresume, astream, generate, resume
    from strokeagent.stages import Canvas, Drafter, Planner, Refiner, Reflector, TrajectoryView
    from strokeagent.state import ImageRef, Plan, Reflection, Step, Trajectory
    from strokeagent.store import ArtifactStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'strokeagent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
