"""The GenEval critic: GenEval's rules on any image, with a transformers detector and CLIP colours.

    >>> critic = GenEvalCritic(detector="models/mask2former-swin-s-coco", clip="models/clip-vit-l-14")  # doctest: +SKIP
    >>> verdict = await critic.score(image, row.prompt, scene=row)                                      # doctest: +SKIP
    >>> verdict.correct, verdict.reason                                                                  # doctest: +SKIP
    (False, 'expected dog right of target, found above target')

What GenEval (djghosh13/geneval) does with mmdetection's Mask2Former and
open_clip's ViT-L/14, with any transformers detector (OWLv2, DETR, Mask2Former)
and any transformers CLIP in their place, loaded by path:

1. detect every class the row names; keep detections by GenEval's thresholds
   (``rules.keep_detections``: 0.3, or 0.9 on counting rows; 16 per class);
2. colour: for each box to check, paste the image over a grey ``#999`` canvas
   through the detection's mask (when the detector segments), crop to the box,
   and classify it zero-shot among GenEval's ten colours with the templates
   ``"a photo of a {c} {cls}"``, ``"a photo of a {c}-colored {cls}"``,
   ``"a photo of a {c} object"`` (text embeddings normalised, averaged,
   normalised again; the highest cosine wins);
3. ``rules.evaluate``: the verdict and GenEval's reasons.

Without a row (``scene=None``) the prompt is parsed into a scene graph and
judged as the clauses it implies. ``score`` is the fraction of clauses that hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strokeagent.core.threads import OwnThread
from strokeagent.critics import Verdict, as_canvas, clause_score, violation_from_reason
from strokeagent.critics.detectors import Detector, load_detector
from strokeagent.critics.rules import (
    COLORS,
    COUNTING_THRESHOLD,
    MAX_OBJECTS,
    MAX_OVERLAP,
    POSITION_THRESHOLD,
    THRESHOLD,
    Detection,
    evaluate,
    keep_detections,
)

COLOR_TEMPLATES = ("a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object")


def rows_of(prompt: str, scene: Any) -> tuple[str | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """``(tag, include, exclude)`` for a GenEval row, a scene graph, or the prompt parsed."""
    from strokeagent.critics.canvas import clauses_of
    from strokeagent.scene import parse_prompt

    if scene is None:
        scene = parse_prompt(prompt)
    tag = getattr(scene, "tag", None) or (scene.get("tag") if isinstance(scene, dict) else None)
    include, exclude = clauses_of(scene)
    return tag, include, exclude


class ColorClassifier:
    """GenEval's colour of a detection: CLIP zero-shot over the masked, cropped box."""

    def __init__(self, clip: Any, bgcolor: str = "#999", crop: bool = True) -> None:
        self.clip, self.bgcolor, self.crop = clip, bgcolor, crop
        self._weights: dict[str, Any] = {}

    def weights(self, cls: str) -> Any:
        """``(embedding dim, 10)``: one averaged, normalised text embedding per colour."""
        if cls not in self._weights:
            columns = []
            for c in COLORS:
                emb = self.clip.text([t.format(c=c, cls=cls) for t in COLOR_TEMPLATES]).mean(dim=0)
                columns.append(emb / emb.norm())
            import torch

            self._weights[cls] = torch.stack(columns, dim=1)
        return self._weights[cls]

    def crop_of(self, image: Any, det: Detection) -> Any:
        """What CLIP sees for one detection: the object over grey (with a mask), cropped to its box."""
        from PIL import Image

        image = image.convert("RGB")
        if det.mask is not None:
            blank = image.copy() if self.bgcolor == "original" else Image.new("RGB", image.size, self.bgcolor)
            image = Image.composite(image, blank, Image.fromarray(det.mask.astype("uint8") * 255))
        return image.crop(tuple(det.box)) if self.crop else image

    def __call__(self, image: Any, cls: str, dets: list[Detection]) -> list[str]:
        if not dets:
            return []
        logits = self.clip.images([self.crop_of(image, d) for d in dets]) @ self.weights(cls)
        return [COLORS[int(i)] for i in logits.argmax(dim=1)]


class GenEvalCritic(OwnThread):
    """GenEval's verdict with a pluggable detector; options are GenEval's ``--options`` with its defaults.

    Each verdict (the detector, then CLIP on the colours) runs on the critic's own thread, ``executor``.
    """

    thread_name = "geneval"

    name = "geneval"

    def __init__(
        self,
        detector: str | Path | Detector,
        clip: str | Path | Any | None = None,
        *,
        threshold: float = THRESHOLD,
        counting_threshold: float = COUNTING_THRESHOLD,
        max_objects: int = MAX_OBJECTS,
        max_overlap: float = MAX_OVERLAP,
        position_threshold: float = POSITION_THRESHOLD,
        bgcolor: str = "#999",
        crop: bool = True,
        device: str = "cpu",
    ) -> None:
        for label, value in (("threshold", threshold), ("counting_threshold", counting_threshold)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{label} is a confidence, between 0 and 1; got {value}")
        self.detector = load_detector(detector, device) if isinstance(detector, str | Path) else detector
        if isinstance(clip, str | Path):
            from strokeagent.critics.clip_score import load_clip

            clip = load_clip(str(clip), device)
        self.colors = ColorClassifier(clip, bgcolor, crop) if clip is not None else None
        self.options = {
            "threshold": threshold,
            "counting_threshold": counting_threshold,
            "max_objects": max_objects,
            "max_overlap": max_overlap,
        }
        self.position_threshold = position_threshold

    async def score(self, image: Any, prompt: str, *, scene: Any = None) -> Verdict:
        tag, include, exclude = rows_of(prompt, scene)
        return await self.on_own_thread(self._judge, as_canvas(image).image, tag, include, exclude)

    def _judge(self, image: Any, tag: str | None, include: list, exclude: list) -> Verdict:
        classes = list(dict.fromkeys(r["class"] for r in [*include, *exclude]))
        detected = keep_detections(self.detector.detect(image, classes), tag, **self.options)
        if any(r.get("color") for r in include) and self.colors is None:
            raise ValueError("this row asks for colours: give the GenEval critic a CLIP model (clip = PATH)")
        colors_of = (lambda cls, dets: self.colors(image, cls, dets)) if self.colors else None
        correct, reasons = evaluate(
            detected, include, exclude, colors_of=colors_of, position_threshold=self.position_threshold
        )
        return Verdict(
            critic=self.name,
            correct=correct,
            score=clause_score(len(include) + len(exclude), len(reasons)),
            violations=[violation_from_reason(r, COLORS) for r in reasons],
            details={"detections": {c: [d.to_json() for d in ds] for c, ds in detected.items()}},
        )
