"""The typed state of one process-driven generation.

    >>> plan = Plan(instruction="draw a red apple on the left", description="a red apple")
    >>> step = Step(index=0, plan=plan)
    >>> Trajectory(prompt="a red apple", seed=0, steps=[step]).current_step.plan.instruction
    'draw a red apple on the left'

One trajectory is ``s1, v1, s2, v2, ... vK`` in the paper's terms: text states
(``Plan``, ``Reflection``) and visual states (``ImageRef``) interleaved, grouped
into ``Step``s. Images never live here as pixels: an ``ImageRef`` names a PNG in
the run's content-addressed artifact store (``strokeagent.core.store``), so the state
stays small enough to checkpoint after every stage.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StageName = Literal["plan", "draft", "reflect", "refine"]
STAGES: tuple[StageName, ...] = ("plan", "draft", "reflect", "refine")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImageRef(_Frozen):
    """A PNG in the artifact store, by the SHA-256 of its bytes.

    ``meta`` is small JSON that the stage which made the image attaches to it
    (the stroke canvas keeps the list of what it drew there, so that a reflector
    can rebuild its object-id buffer); it plays no part in the address.
    """

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    meta: dict[str, Any] = Field(default_factory=dict)


class Plan(_Frozen):
    """The paper's ``<ins>`` and ``<des>``: what to do now, and the whole scene so far.

    ``done`` means this step completes the scene: the loop ends after it (under
    the ``planner`` stop rule). ``meta`` carries structured payloads for stages
    that understand them (the sketch policy puts its scene-graph increment here).
    """

    instruction: str
    description: str = ""
    done: bool = False
    #: What the planner dropped or changed from the prompt ("'a million' cats capped to 12"); the loop
    #: copies these into ``Trajectory.notes``, so a run always says what it did not draw.
    notes: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


class Reflection(_Frozen):
    """The paper's Inspect: the plan checked against the prompt, the image against the plan.

    ``ok`` is true when both checks pass; otherwise ``corrected_instruction`` says
    what a refiner should do. ``done`` says the picture is complete: a unified
    model decides to stop after its inspection (the paper's complexity-adaptive
    stop), so the loop ends after this step (under the ``planner`` stop rule)
    instead of asking for one more plan.
    """

    prompt_conflicts: list[str] = Field(default_factory=list)
    image_conflicts: list[str] = Field(default_factory=list)
    corrected_instruction: str | None = None
    ok: bool = True
    done: bool = False
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def conflicts(self) -> list[str]:
        return [*self.prompt_conflicts, *self.image_conflicts]


class Step(_Frozen):
    """One step: a plan, its draft, then reflect/refine rounds.

    ``reflections[i]`` inspects ``images[i]``: the draft is ``images[0]`` and each
    refinement appends one more image.
    """

    index: int = Field(ge=0)
    plan: Plan | None = None
    images: list[ImageRef] = Field(default_factory=list)
    reflections: list[Reflection] = Field(default_factory=list)

    @property
    def draft(self) -> ImageRef | None:
        return self.images[0] if self.images else None

    @property
    def refinements(self) -> list[ImageRef]:
        return self.images[1:]

    @property
    def image(self) -> ImageRef | None:
        """The step's latest image: the last refinement, else the draft."""
        return self.images[-1] if self.images else None


class StageTiming(_Frozen):
    step: int
    stage: StageName
    seconds: float
    # Unified models report how much of their shared context each stage reused.
    prefilled_tokens: int | None = None
    generated_tokens: int | None = None


class Trajectory(_Frozen):
    """A whole run: the prompt, every step, the final image, timings and versions."""

    prompt: str
    seed: int
    steps: list[Step] = Field(default_factory=list)
    final_image: ImageRef | None = None
    timings: list[StageTiming] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    policy: str = ""
    notes: list[str] = Field(default_factory=list)  # what the run dropped or changed from the prompt
    run_dir: str | None = None  # the run folder whose images/ holds every ImageRef

    def open_image(self, ref: ImageRef):  # -> PIL.Image.Image
        """The pixels of ``ref`` from this run's folder: ``traj.open_image(traj.final_image)``."""
        from strokeagent.core.store import ArtifactStore

        if self.run_dir is None:
            raise ValueError("this trajectory has no run folder; its images cannot be opened")
        return ArtifactStore(f"{self.run_dir}/images").open(ref)

    @property
    def current_step(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    @property
    def canvas(self) -> ImageRef | None:
        """The newest image of the whole trajectory, which the next stage builds on."""
        for step in reversed(self.steps):
            if step.image is not None:
                return step.image
        return None

    def stage_seconds(self) -> dict[str, float]:
        """Total seconds spent inside each stage."""
        totals: dict[str, float] = {}
        for t in self.timings:
            totals[t.stage] = totals.get(t.stage, 0.0) + t.seconds
        return totals
