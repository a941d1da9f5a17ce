"""Tiny random-weight detectors and CLIP, built offline, judged through the real GenEval critic code path.

Random weights say nothing, so the tests fix the class heads by hand (weights
zero, a chosen bias): every query then answers one class with a confidence we
can compute, and the boxes land where a sigmoid of the bias puts them.
"""

import asyncio
import math
import shutil

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("scipy")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from strokeagent.critics.clip_score import ClipScoreCritic, load_clip  # noqa: E402
from strokeagent.critics.detectors import load_detector  # noqa: E402
from strokeagent.critics.geneval import ColorClassifier, GenEvalCritic  # noqa: E402
from strokeagent.critics.rules import COLORS, Detection  # noqa: E402
from strokeagent.scene.geneval import SuiteItem  # noqa: E402
from strokeagent.testing.critics import (  # noqa: E402
    CriticConformance,
    build_tiny_clip,
    build_tiny_detr,
    build_tiny_mask2former,
    build_tiny_owlv2,
)

IMAGE = Image.new("RGB", (64, 48), (200, 30, 30))
DOG = 16  # COCO index of "dog"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers.utils import logging

    logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("tiny")
    return {
        "clip": build_tiny_clip(root / "clip"),
        "detr": build_tiny_detr(root / "detr"),
        "owlv2": build_tiny_owlv2(root / "owlv2"),
        "mask2former": build_tiny_mask2former(root / "mask2former"),
    }


def _rewrite(src, dst, edit):
    """Copy a saved model folder, change its weights with ``edit(model)``, save it back."""
    import transformers

    shutil.copytree(src, dst)
    auto = transformers.AutoModelForObjectDetection
    if "owlv2" in str(src):
        auto = transformers.AutoModelForZeroShotObjectDetection
    model = auto.from_pretrained(dst)
    with torch.no_grad():
        edit(model)
    model.save_pretrained(dst)
    return dst


def detr_all_dogs(logit):
    """Every query: "dog" with softmax confidence e^logit / (e^logit + 80), box (0.5, 0.5, 0.5, 0.5)."""

    def edit(model):
        head = model.class_labels_classifier
        head.weight.zero_()
        head.bias.zero_()
        head.bias[DOG] = logit
        last = model.bbox_predictor.layers[-1]
        last.weight.zero_()
        last.bias.zero_()  # sigmoid(0) = 0.5 for centre x, centre y, width, height

    return edit


def row(tag, include, exclude=None, prompt="p"):
    data = {"tag": tag, "include": include, "prompt": prompt}
    if exclude:
        data["exclude"] = exclude
    return SuiteItem.model_validate(data)


def judge(critic, item):
    return asyncio.run(critic.score(IMAGE, item.prompt, scene=item))


def test_detr_by_path_counts_at_geneval_thresholds(models, tmp_path):
    sure = _rewrite(models["detr"], tmp_path / "sure", detr_all_dogs(math.log(1520)))  # 1520/1600 = 0.95
    critic = GenEvalCritic(detector=str(sure))
    dets = critic.detector.detect(IMAGE, ["dog", "cup"])
    assert list(dets) == ["dog"] and len(dets["dog"]) == 5  # five queries, all dogs
    for d in dets["dog"]:
        assert d.score == pytest.approx(0.95, abs=1e-5)
        # (cx, cy, w, h) = 0.5 of a 64×48 image: x 16..48, y 12..36.
        assert d.box == pytest.approx((16, 12, 48, 36), abs=1e-3)
    assert judge(critic, row("single_object", [{"class": "dog", "count": 1}])).correct
    five = judge(critic, row("counting", [{"class": "dog", "count": 5}], [{"class": "dog", "count": 6}]))
    assert five.correct
    four = judge(critic, row("counting", [{"class": "dog", "count": 4}], [{"class": "dog", "count": 5}]))
    assert (four.correct, four.reason, four.score) == (False, "expected dog<5, found 5", 0.5)
    cup = judge(critic, row("two_object", [{"class": "dog", "count": 1}, {"class": "cup", "count": 1}]))
    assert cup.reason == "expected cup>=1, found 0" and cup.violations[0].kind == "missing"


def test_detr_half_sure_passes_0_3_but_not_the_counting_0_9(models, tmp_path):
    half = _rewrite(models["detr"], tmp_path / "half", detr_all_dogs(math.log(80)))  # 80/160 = 0.5
    critic = GenEvalCritic(detector=str(half))
    assert judge(critic, row("single_object", [{"class": "dog", "count": 1}])).correct
    counting = judge(critic, row("counting", [{"class": "dog", "count": 2}], [{"class": "dog", "count": 3}]))
    assert counting.reason == "expected dog>=2, found 0"


def test_owlv2_by_path_queries_the_classes_asked(models, tmp_path):
    def edit(model):
        head = model.class_head
        for layer in (head.dense0, head.logit_shift, head.logit_scale):
            layer.weight.zero_()
            layer.bias.zero_()
        head.logit_shift.bias.fill_(1.5)
        head.logit_scale.bias.fill_(1.0)  # scale = elu(1) + 1 = 2; logit = 1.5 × 2 = 3

    path = _rewrite(models["owlv2"], tmp_path / "owl", edit)
    critic = GenEvalCritic(detector=str(path))
    assert type(critic.detector).__name__ == "OpenVocabularyDetector"
    dets = critic.detector.detect(IMAGE, ["dog"])["dog"]
    assert len(dets) == 16  # one box per 8-pixel patch of the 32-pixel input
    assert all(d.score == pytest.approx(1 / (1 + math.exp(-3)), abs=1e-5) for d in dets)
    assert all(0 <= d.box[0] <= d.box[2] <= 64 and 0 <= d.box[1] <= d.box[3] <= 48 for d in dets)
    assert judge(critic, row("single_object", [{"class": "dog", "count": 1}])).correct
    two = judge(critic, row("counting", [{"class": "dog", "count": 2}], [{"class": "dog", "count": 3}]))
    assert two.reason == "expected dog<3, found 16"  # 0.953 > 0.9; GenEval caps at 16 per class


def test_mask2former_boxes_are_the_masks_bounds(models):
    detector = load_detector(models["mask2former"])
    assert type(detector).__name__ == "SegmentationDetector"
    from strokeagent.scene.vocab import COCO_CLASSES

    found = detector.detect(IMAGE, list(COCO_CLASSES))
    dets = [d for ds in found.values() for d in ds]
    assert dets, "four queries should leave at least one non-empty mask"
    for d in dets:
        assert d.mask.shape == (48, 64) and d.mask.any()
        ys, xs = np.nonzero(d.mask)
        assert d.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert 0 < d.score <= 1
    # Through the critic with every detection kept: the verdict follows the detections.
    cls = next(iter(found))
    critic = GenEvalCritic(detector=detector, threshold=0.0)
    assert judge(critic, row("single_object", [{"class": cls, "count": 1}])).correct


def test_colour_crop_blanks_outside_the_mask_and_crops_to_the_box():
    image = Image.new("RGB", (8, 4), (255, 0, 0))
    mask = np.zeros((4, 8), bool)
    mask[:, :2] = True
    crop = ColorClassifier(clip=None).crop_of(image, Detection((0, 0, 4, 4), 0.9, mask))
    assert crop.size == (4, 4)
    assert crop.getpixel((1, 0)) == (255, 0, 0) and crop.getpixel((3, 0)) == (0x99, 0x99, 0x99)
    plain = ColorClassifier(clip=None).crop_of(image, Detection((2, 1, 6, 3), 0.9))
    assert plain.size == (4, 2) and plain.getpixel((0, 0)) == (255, 0, 0)


def test_clip_colours_by_path(models, tmp_path):
    clip = load_clip(str(models["clip"]))
    colors = ColorClassifier(clip)
    weights = colors.weights("cup")
    assert tuple(weights.shape) == (16, 10)
    assert torch.allclose(weights.norm(dim=0), torch.ones(10), atol=1e-5)
    dets = [Detection((0, 0, 32, 24), 0.9), Detection((32, 24, 64, 48), 0.8)]
    named = colors(IMAGE, "cup", dets)
    assert len(named) == 2 and set(named) <= set(COLORS)
    assert named == colors(IMAGE, "cup", dets)
    # The critic classifies the most confident dog's box, and judges by that colour.
    detr = _rewrite(models["detr"], tmp_path / "detr", detr_all_dogs(math.log(1520)))
    critic = GenEvalCritic(detector=str(detr), clip=str(models["clip"]))
    top = critic.detector.detect(IMAGE, ["dog"])["dog"][:1]
    seen = colors(IMAGE, "dog", top)[0]
    for asked in ("red", "blue"):
        verdict = judge(critic, row("colors", [{"class": "dog", "count": 1, "color": asked}]))
        assert verdict.correct == (seen == asked)
        if not verdict.correct:
            assert verdict.reason == f"expected {asked} dog>=1, found 0 {asked}; and 1 {seen}"


def test_clip_score(models):
    sure = ClipScoreCritic(clip=str(models["clip"]), threshold=-1.0)
    verdict = asyncio.run(sure.score(IMAGE, "a photo of a red cup"))
    cos = verdict.details["cosine"]
    assert verdict.correct and verdict.score == pytest.approx(max(cos, 0), abs=1e-6)
    assert verdict.details["clip_score"] == pytest.approx(2.5 * max(cos, 0), abs=1e-5)
    strict = asyncio.run(
        ClipScoreCritic(clip=str(models["clip"]), threshold=1.0).score(IMAGE, "a photo of a red cup")
    )
    assert not strict.correct and "below 1" in strict.violations[0].message
    with pytest.raises(ValueError, match="cosine"):
        ClipScoreCritic(clip=str(models["clip"]), threshold=2.0)


def test_torch_critics_score_on_a_thread_of_their_own_whichever_event_loop_asks(
    models, tmp_path, monkeypatch
):
    # On a GPU, cuDNN plans and cuBLAS handles belong to a thread: a worker of each run's event loop starts cold.
    from conftest import record_threads

    clip = ClipScoreCritic(clip=str(models["clip"]), threshold=0.0)
    geneval = GenEvalCritic(detector=str(_rewrite(models["detr"], tmp_path / "detr", detr_all_dogs(5.0))))
    threads = record_threads(monkeypatch, [(clip, "_cosine"), (geneval, "_judge")])
    for _ in range(2):  # two event loops, as two `asyncio.run` calls of a script make
        asyncio.run(clip.score(IMAGE, "a photo of a red cup"))
        asyncio.run(
            geneval.score(
                IMAGE, "a photo of a dog", scene=row("single_object", [{"class": "dog", "count": 1}])
            )
        )
    assert threads == ["strokeagent-clip_0", "strokeagent-geneval_0"] * 2


class TestGenEvalCriticConformance(CriticConformance):
    @pytest.fixture(autouse=True)
    def _models(self, models, tmp_path):
        self.detr = _rewrite(models["detr"], tmp_path / "detr", detr_all_dogs(math.log(1520)))

    def make_critic(self):
        return GenEvalCritic(detector=str(self.detr))

    def cases(self):
        return [(IMAGE, "a photo of a dog", None)]

    def good_cases(self):
        return [(IMAGE, "a photo of a dog", row("single_object", [{"class": "dog", "count": 1}]))]

    def bad_cases(self):
        return [(IMAGE, "a photo of a cup", row("single_object", [{"class": "cup", "count": 1}]))]


class TestClipScoreConformance(CriticConformance):
    @pytest.fixture(autouse=True)
    def _models(self, models):
        self.clip = models["clip"]

    def make_critic(self):
        return ClipScoreCritic(clip=str(self.clip), threshold=0.0)

    def cases(self):
        return [
            (IMAGE, "a photo of a red cup", None),
            (Image.new("RGB", (40, 40), "blue"), "a blue sky", None),
        ]
