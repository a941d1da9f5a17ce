"""The four stages of the method, as narrow async protocols: one method each.

    >>> class EchoPlanner:
    ...     async def plan(self, view: TrajectoryView) -> Plan:
    ...         return Plan(instruction=view.prompt, description=view.prompt, done=True)
    >>> isinstance(EchoPlanner(), Planner)
    True

Every stage receives a read-only ``TrajectoryView``: the prompt, the steps so
far, this call's seed, and a way to open images from the run's store. Stages
return plain values (a ``Plan``, a ``Canvas``, a ``Reflection``); the loop stores
images and records timings, so a stage never touches the run folder.

One object may implement all four (a unified model sharing its context).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from strokeagent.core.state import ImageRef, Plan, Reflection, StageName, Step, Trajectory

if TYPE_CHECKING:
    from PIL import Image

    from strokeagent.core.store import ArtifactStore


@dataclass(frozen=True)
class Canvas:
    """An image as a stage sees it: pixels plus the ``meta`` its maker attached."""

    image: Image.Image
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrajectoryView:
    """What a stage may read: the trajectory so far, and this call's seed.

    ``seed`` is derived from the run seed, the step, the stage and the refine
    round, so a stage that draws its randomness from it gives the same bytes
    whether the run went straight through or was resumed.
    """

    trajectory: Trajectory
    step: int
    stage: StageName
    seed: int
    store: ArtifactStore

    @property
    def prompt(self) -> str:
        return self.trajectory.prompt

    @property
    def steps(self) -> list[Step]:
        return self.trajectory.steps

    @property
    def current(self) -> Step | None:
        return self.trajectory.current_step

    @property
    def canvas(self) -> ImageRef | None:
        """The newest image so far (None before the first draft)."""
        return self.trajectory.canvas

    def open(self, ref: ImageRef) -> Canvas:
        return Canvas(self.store.open(ref), dict(ref.meta))


def stage_seed(run_seed: int, step: int, stage: str, round_: int = 0) -> int:
    """A 63-bit seed for one stage call, stable across processes and resumes."""
    digest = hashlib.sha256(f"{run_seed}:{step}:{stage}:{round_}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@runtime_checkable
class Planner(Protocol):
    async def plan(self, view: TrajectoryView) -> Plan:
        """Write this step's instruction and the running description; set ``done`` on the last step."""
        ...


@runtime_checkable
class Drafter(Protocol):
    async def draft(self, view: TrajectoryView, plan: Plan) -> Canvas:
        """Draw the plan: from scratch on step 0, else by editing ``view.canvas``."""
        ...


@runtime_checkable
class Reflector(Protocol):
    async def reflect(self, view: TrajectoryView, plan: Plan, image: Canvas) -> Reflection:
        """Check the plan against the prompt and the image against the plan."""
        ...


@runtime_checkable
class Refiner(Protocol):
    async def refine(self, view: TrajectoryView, plan: Plan, image: Canvas, reflection: Reflection) -> Canvas:
        """Fix what the reflection found, and nothing else."""
        ...


STAGE_PROTOCOLS: dict[StageName, type] = {
    "plan": Planner,
    "draft": Drafter,
    "reflect": Reflector,
    "refine": Refiner,
}
