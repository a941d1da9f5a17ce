"""``hybrid.draft``: "sketch, then paint".

    [stages.draft]
    kind = "hybrid.draft"
    backend = "../backends/sd-img2img.toml"
    strength = 0.6

The sketch policy's stroke canvas, laid out from the scene graph, is the skeleton, and an
image-to-image pass renders it. The sketch document stays in the canvas meta, so the next
step's sketch adds to it.
"""

from __future__ import annotations

from typing import Any

from strokeagent.backends.image import require_task
from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Plan
from strokeagent.kinds.diffusion import _backend, _Painter


class SketchThenPaintDrafter(_Painter):
    """``hybrid.draft``: the sketch policy's stroke canvas, painted over by image-to-image.

    Options: ``backend``, ``strength`` (how far the paint may stray from the
    sketch), ``size``, ``steps``, ``guidance``, ``negative_prompt``, and the
    sketch drafter's ``mistake_rate`` (default 0: the sketch is the plan's
    layout, drawn as planned).
    """

    def __init__(
        self,
        backend: str,
        strength: float = 0.6,
        size: int = 512,
        steps: int = 30,
        guidance: float | None = None,
        negative_prompt: str | None = None,
        mistake_rate: float = 0.0,
    ) -> None:
        from strokeagent.sketch import SketchDrafter

        super().__init__(size, steps, guidance, negative_prompt, strength)
        self.backend = _backend(backend, "backend", "hybrid.draft")
        require_task(self.backend, "image-to-image", "hybrid.draft (it paints over the sketch)")
        self.sketcher = SketchDrafter(size=size, mistake_rate=mistake_rate)

    async def draft(self, view: TrajectoryView, plan: Plan) -> Canvas:
        sketch = await self.sketcher.draft(view, plan)
        prompt = plan.description or plan.instruction or view.prompt
        meta: dict[str, Any] = dict(sketch.meta)
        return await self.paint(self.backend, view, prompt, sketch, "image-to-image", meta)
