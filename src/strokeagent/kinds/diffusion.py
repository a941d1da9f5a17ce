"""The image half of the composite policy: an image backend drafts and refines.

    [stages.draft]
    kind = "diffusion.draft"
    backend = "../backends/sdxl.toml"           # step 1: text-to-image from the plan's description
    edit_backend = "../backends/flux-kontext.toml"  # later steps: edit the canvas with the step's instruction
    steps = 28

    [stages.refine]
    kind = "diffusion.refine"
    backend = "../backends/flux-kontext.toml"   # edit by the corrected instruction (or image-to-image)
    strength = 0.5

Backends load when the policy loads (``load_backend``, once per process per
file), and each stage checks there that its backend can do what the stage
will ask: a text-to-image-only model named as an editor is refused before the
run starts. Every request carries the stage's seed (``view.seed``), so a run
and its resume give the same pixels.

``hybrid.draft`` (``strokeagent.kinds.hybrid``) paints over the sketch policy's stroke canvas with
the same ``_Painter``.
"""

from __future__ import annotations

from typing import Literal

from strokeagent.backends import load_backend
from strokeagent.backends.image import ImageBackend, ImageRequest, Task, require_task
from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Plan, Reflection, StageUsage

META_KEY = "diffusion"


class _Painter:
    """What the three stages share: request options and one call to a backend."""

    def __init__(
        self,
        size: int | tuple[int, int],
        steps: int,
        guidance: float | None,
        negative_prompt: str | None,
        strength: float,
    ) -> None:
        self.width, self.height = (size, size) if isinstance(size, int) else tuple(size)
        self.steps = steps
        self.guidance = guidance
        self.negative_prompt = negative_prompt
        self.strength = strength
        # Validate the options now (policy load), with a request that is never sent.
        ImageRequest("probe", negative_prompt, self.width, self.height, steps, guidance, strength=strength)

    async def paint(
        self,
        backend: ImageBackend,
        view: TrajectoryView,
        prompt: str,
        canvas: Canvas | None,
        task: Task,
        meta: dict,
    ) -> Canvas:
        request = ImageRequest(
            prompt=prompt,
            negative_prompt=self.negative_prompt,
            width=self.width,
            height=self.height,
            steps=self.steps,
            guidance=self.guidance,
            seed=view.seed,
            image=canvas.image if canvas is not None else None,
            strength=self.strength,
            edit=task == "edit",
        )
        [image] = await backend.generate([request])
        info = {
            "backend": backend.name,
            "task": task,
            "prompt": prompt,
            "seed": view.seed,
            "steps": self.steps,
        }
        denoising = self.steps
        if task == "image-to-image":
            info["strength"] = self.strength
            denoising = int(self.steps * self.strength)  # what diffusers' img2img actually runs
        return Canvas(image, {**meta, META_KEY: info}, usage=StageUsage(denoising_steps=denoising))


def _backend(ref: str, option: str, where: str) -> ImageBackend:
    backend = load_backend(ref)
    if not isinstance(backend, ImageBackend):
        raise ValueError(f"{where}: {option} {ref} is a {type(backend).__name__}, not an image backend")
    return backend


def _later_task(backend: ImageBackend, mode: str, where: str) -> Task:
    """``auto``: edit when the backend can, else image-to-image."""
    if mode not in ("auto", "edit", "image-to-image"):
        raise ValueError(f"{where}: mode must be auto, edit or image-to-image, got {mode!r}")
    task: Task = ("edit" if "edit" in backend.tasks else "image-to-image") if mode == "auto" else mode  # type: ignore[assignment]
    require_task(backend, task, where)
    return task


class DiffusionDrafter(_Painter):
    """``diffusion.draft``: step 1 from scratch (text-to-image), later steps edit the current canvas.

    Options: ``backend`` (a description file), ``edit_backend`` (for later
    steps; default the same), ``mode`` for later steps (``auto``, ``edit`` with
    the step's instruction, ``image-to-image`` with the description at
    ``strength``), ``size``, ``steps``, ``guidance``, ``negative_prompt``.
    """

    def __init__(
        self,
        backend: str,
        edit_backend: str | None = None,
        mode: Literal["auto", "edit", "image-to-image"] = "auto",
        size: int | list[int] = 512,
        steps: int = 30,
        guidance: float | None = None,
        negative_prompt: str | None = None,
        strength: float = 0.6,
    ) -> None:
        super().__init__(size, steps, guidance, negative_prompt, strength)  # type: ignore[arg-type]
        self.backend = _backend(backend, "backend", "diffusion.draft")
        require_task(self.backend, "text-to-image", "diffusion.draft (step 1 draws from scratch)")
        self.edit_backend = (
            _backend(edit_backend, "edit_backend", "diffusion.draft") if edit_backend else self.backend
        )
        self.later = _later_task(self.edit_backend, mode, "diffusion.draft (later steps change the canvas)")

    async def draft(self, view: TrajectoryView, plan: Plan) -> Canvas:
        if view.canvas is None:
            prompt = plan.description or plan.instruction
            return await self.paint(self.backend, view, prompt, None, "text-to-image", {})
        canvas = view.open(view.canvas)
        # An edit model is told what to change; an image-to-image model is shown the whole scene.
        prompt = plan.instruction if self.later == "edit" else (plan.description or plan.instruction)
        return await self.paint(self.edit_backend, view, prompt, canvas, self.later, canvas.meta)


class DiffusionRefiner(_Painter):
    """``diffusion.refine``: redo the image by the reflection's corrected instruction.

    ``mode = "edit"`` sends the corrected instruction to an editing model;
    ``"image-to-image"`` repaints at ``strength`` with the instruction and the
    description; ``"auto"`` edits when the backend can.
    """

    def __init__(
        self,
        backend: str,
        mode: Literal["auto", "edit", "image-to-image"] = "auto",
        strength: float = 0.5,
        size: int | list[int] = 512,
        steps: int = 30,
        guidance: float | None = None,
        negative_prompt: str | None = None,
    ) -> None:
        super().__init__(size, steps, guidance, negative_prompt, strength)  # type: ignore[arg-type]
        self.backend = _backend(backend, "backend", "diffusion.refine")
        self.task = _later_task(self.backend, mode, "diffusion.refine")

    async def refine(self, view: TrajectoryView, plan: Plan, image: Canvas, reflection: Reflection) -> Canvas:
        fix = reflection.corrected_instruction or plan.instruction
        prompt = fix if self.task == "edit" else ". ".join(filter(None, [fix, plan.description]))
        return await self.paint(self.backend, view, prompt, image, self.task, image.meta)
