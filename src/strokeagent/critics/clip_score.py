"""CLIP, loaded by path: embeddings for colours and for CLIPScore.

    >>> critic = ClipScoreCritic(clip="models/clip-vit-large-patch14", threshold=0.25)   # doctest: +SKIP
    >>> (await critic.score(image, "a photo of a red cup")).details["clip_score"]         # doctest: +SKIP
    0.79

``ClipScoreCritic`` is CLIPScore (Hessel et al., 2021): ``w · max(cos(image,
text), 0)`` with ``w = 2.5``, reported in ``details["clip_score"]``. The
verdict's ``score`` is ``max(cos, 0)`` (in [0, 1]) and it is ``correct`` when
the cosine reaches ``threshold``. Only the prompt is read: CLIP has no notion of
counts or positions, which is why GenEval uses a detector.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from strokeagent.core.threads import OwnThread
from strokeagent.critics import Verdict, Violation, as_canvas

CLIPSCORE_WEIGHT = 2.5


class Clip(OwnThread):
    """A transformers CLIP model and its processor, from a ``save_pretrained`` folder; its calls belong on
    ``executor`` (what its convolutions warm on a GPU stays warm there)."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import transformers

        self.path, self.device = str(path), device
        self.processor = transformers.AutoProcessor.from_pretrained(self.path)
        self.model = transformers.AutoModel.from_pretrained(self.path, use_safetensors=True).to(device).eval()

    def text(self, texts: Sequence[str]) -> Any:
        """Unit-length text embeddings, one row per text."""
        import torch

        tokens = self.processor(text=list(texts), return_tensors="pt", padding=True, truncation=True)
        with torch.inference_mode():
            out = self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()})
        return _unit(_features(out))

    def images(self, images: Sequence[Any]) -> Any:
        """Unit-length image embeddings, one row per image (CLIP's own resize and crop)."""
        import torch

        pixels = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        with torch.inference_mode():
            out = self.model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device))
        return _unit(_features(out))


def _features(out: Any) -> Any:
    # transformers 5 returns the projected embedding as pooler_output; older versions a tensor.
    return out.pooler_output if hasattr(out, "pooler_output") else out


def _unit(x: Any) -> Any:
    return x / x.norm(dim=-1, keepdim=True)


@functools.cache
def load_clip(path: str, device: str = "cpu") -> Clip:
    """One ``Clip`` per folder and device, per process."""
    return Clip(path, device)


class ClipScoreCritic:
    """The image's CLIP similarity to the prompt: ``ClipScoreCritic(clip="models/clip", threshold=0.25)``."""

    name = "clip-score"

    def __init__(self, clip: str | Path, threshold: float = 0.25, device: str = "cpu") -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity, between -1 and 1; got {threshold}")
        self.clip = load_clip(str(clip), device)
        self.threshold = threshold

    async def score(self, image: Any, prompt: str, *, scene: Any = None) -> Verdict:
        canvas = as_canvas(image)
        cos = await self.clip.on_own_thread(self._cosine, canvas.image, prompt)
        correct = cos >= self.threshold
        violations = (
            []
            if correct
            else [
                Violation(kind="mismatch", message=f"CLIP similarity {cos:.3f} is below {self.threshold:g}")
            ]
        )
        return Verdict(
            critic=self.name,
            correct=correct,
            score=max(cos, 0.0),
            violations=violations,
            details={"cosine": round(cos, 6), "clip_score": round(CLIPSCORE_WEIGHT * max(cos, 0.0), 6)},
        )

    def _cosine(self, image: Any, prompt: str) -> float:
        return float((self.clip.images([image]) @ self.clip.text([prompt]).T)[0, 0])
