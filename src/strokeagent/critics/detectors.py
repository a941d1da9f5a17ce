"""Object detectors from transformers, loaded by path, answering in GenEval's terms.

    >>> detector = load_detector("models/detr-resnet-50")          # doctest: +SKIP
    >>> detector.detect(image, ["dog", "cup"])["dog"][0].score     # doctest: +SKIP
    0.97

``load_detector`` reads the folder's ``config.json`` and picks the family:

* **open vocabulary** (``owlv2``, ``owlvit``): the classes are the text queries,
  ``"a photo of a {class}"``; each box takes the class it matches best.
* **closed set** (``detr``, ``conditional_detr``, ``deformable_detr``, ...):
  the model's own labels, COCO names mapped to GenEval's (``mouse`` →
  ``computer mouse``).
* **segmentation** (``mask2former``, ``maskformer``, ``oneformer``): instance
  masks, each with its box (the mask's bounds) and the mask itself, which
  GenEval uses to blank the background before classifying colour.

Every detection is returned (no threshold): GenEval's thresholds are the
rules' business (``rules.keep_detections``). torch and transformers are
imported here only, when a detector is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from strokeagent.critics.rules import Detection

#: Model label → GenEval class name, where COCO checkpoints spell it otherwise.
LABEL_ALIASES = {
    "mouse": "computer mouse",
    "remote": "tv remote",
    "keyboard": "computer keyboard",
    "hair dryer": "hair drier",
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "sofa": "couch",
    "tvmonitor": "tv",
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "dining-table": "dining table",
}
OPEN_VOCABULARY = ("owlv2", "owlvit")
SEGMENTATION = ("mask2former", "maskformer", "oneformer")


@runtime_checkable
class Detector(Protocol):
    def detect(self, image: Any, classes: Sequence[str]) -> dict[str, list[Detection]]:
        """Every detection of ``classes`` in ``image`` (a PIL image), by class."""
        ...


def load_detector(path: str | Path, device: str = "cpu") -> Detector:
    """The detector saved in folder ``path`` (``save_pretrained`` layout: config, weights, processor)."""
    import json

    config_file = Path(path) / "config.json"
    try:
        model_type = json.loads(config_file.read_text())["model_type"]
    except (OSError, ValueError, KeyError) as e:
        raise FileNotFoundError(
            f"{path} is not a transformers model folder ({config_file}: {e}); give a folder saved with save_pretrained"
        ) from None
    if model_type in OPEN_VOCABULARY:
        return OpenVocabularyDetector(path, device)
    if model_type in SEGMENTATION:
        return SegmentationDetector(path, device)
    return ClosedSetDetector(path, device)


def _geneval_name(label: str) -> str:
    label = label.strip().lower()
    return LABEL_ALIASES.get(label, label)


class _Transformers:
    auto_model = "AutoModelForObjectDetection"

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import transformers

        self.path, self.device = str(path), device
        self.processor = transformers.AutoProcessor.from_pretrained(self.path)
        self.model = getattr(transformers, self.auto_model).from_pretrained(self.path, use_safetensors=True).to(device).eval()

    def _run(self, **inputs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.model(**{k: v.to(self.device) for k, v in inputs.items()})


class ClosedSetDetector(_Transformers):
    """DETR-family detectors: boxes with the model's own (COCO) labels."""

    def detect(self, image: Any, classes: Sequence[str]) -> dict[str, list[Detection]]:
        image = image.convert("RGB")
        outputs = self._run(**self.processor(images=image, return_tensors="pt"))
        result = self.processor.post_process_object_detection(
            outputs, threshold=0.0, target_sizes=[(image.height, image.width)]
        )[0]
        names = self.model.config.id2label
        wanted = set(classes)
        found: dict[str, list[Detection]] = {}
        for score, label, box in zip(result["scores"], result["labels"], result["boxes"], strict=True):
            cls = _geneval_name(names[int(label)])
            if cls in wanted:
                found.setdefault(cls, []).append(Detection(_box(box), float(score)))
        return found


class OpenVocabularyDetector(_Transformers):
    """OWL-ViT / OWLv2: the classes asked for are the text queries."""

    auto_model = "AutoModelForZeroShotObjectDetection"
    template = "a photo of a {}"

    def detect(self, image: Any, classes: Sequence[str]) -> dict[str, list[Detection]]:
        image = image.convert("RGB")
        classes = list(dict.fromkeys(classes))
        if not classes:
            return {}
        queries = [[self.template.format(c) for c in classes]]
        inputs = self.processor(text=queries, images=image, return_tensors="pt", padding=True)
        outputs = self._run(**inputs)
        # OWLv2 pads the image to a square at the bottom and right: boxes come back in that square.
        side = max(image.width, image.height)
        result = self.processor.post_process_grounded_object_detection(
            outputs, threshold=0.0, target_sizes=[(side, side)]
        )[0]
        found: dict[str, list[Detection]] = {}
        for score, label, box in zip(result["scores"], result["labels"], result["boxes"], strict=True):
            clipped = _clip(_box(box), image.width, image.height)
            found.setdefault(classes[int(label)], []).append(Detection(clipped, float(score)))
        return found


class SegmentationDetector(_Transformers):
    """Mask2Former and kin: instance masks with their bounding boxes."""

    auto_model = "AutoModelForUniversalSegmentation"

    def detect(self, image: Any, classes: Sequence[str]) -> dict[str, list[Detection]]:
        image = image.convert("RGB")
        outputs = self._run(**self.processor(images=image, return_tensors="pt"))
        result = self.processor.post_process_instance_segmentation(
            outputs, threshold=0.0, target_sizes=[(image.height, image.width)], return_binary_maps=True
        )[0]
        names = self.model.config.id2label
        wanted = set(classes)
        maps = result["segmentation"]
        found: dict[str, list[Detection]] = {}
        if maps is None:
            return found
        for index, info in enumerate(result["segments_info"]):
            cls = _geneval_name(names[int(info["label_id"])])
            mask = maps[index].cpu().numpy().astype(bool)
            if cls not in wanted or not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            found.setdefault(cls, []).append(Detection(box, float(info["score"]), mask))
        return found


def _box(tensor: Any) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in tensor.tolist())
    return (x0, y0, x1, y1)


def _clip(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[float, float, float, float]:
    """The box inside the image (OWLv2 boxes may reach into its square padding); kept even if empty."""

    def clamp(v: float, hi: int) -> float:
        return min(max(v, 0.0), float(hi))

    return (clamp(box[0], width), clamp(box[1], height), clamp(box[2], width), clamp(box[3], height))
