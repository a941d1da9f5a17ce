"""GenEval's rules on synthetic detections, against answers worked out by hand."""

import pytest

from strokeagent.critics import violation_from_reason
from strokeagent.critics.rules import COLORS, Detection, compute_iou, evaluate, keep_detections
from strokeagent.scene.geometry import relative_position


def det(box, score=0.95):
    return Detection(box, score)


# -- which detections count ------------------------------------------------------------------------


def test_threshold_is_strictly_above_0_3():
    raw = {"cup": [det((0, 0, 9, 9), 0.3), det((0, 0, 9, 9), 0.31)]}
    assert [d.score for d in keep_detections(raw, "two_object")["cup"]] == [0.31]


def test_counting_rows_use_0_9():
    raw = {"cup": [det((0, 0, 9, 9), s) for s in (0.5, 0.9, 0.91, 0.99)]}
    assert [d.score for d in keep_detections(raw, "counting")["cup"]] == [0.99, 0.91]
    assert len(keep_detections(raw, "colors")["cup"]) == 4


def test_classes_with_nothing_left_are_dropped():
    assert keep_detections({"cup": [det((0, 0, 1, 1), 0.2)]}, None) == {}


def test_at_most_16_per_class_most_confident_first():
    raw = {"cup": [det((i, 0, i + 5, 5), 0.5 + i / 100) for i in range(20)]}
    kept = keep_detections(raw, None)["cup"]
    assert len(kept) == 16
    assert kept[0].score == pytest.approx(0.69) and kept[-1].score == pytest.approx(0.54)


def test_iou_uses_inclusive_pixels():
    # 10×10 each, sharing columns 5..9: 50 / (100 + 100 - 50).
    assert compute_iou((0, 0, 9, 9), (5, 0, 14, 9)) == pytest.approx(1 / 3)
    assert compute_iou((0, 0, 9, 9), (20, 20, 29, 29)) == 0


def test_overlap_suppression_only_when_asked():
    raw = {"cup": [det((0, 0, 9, 9), 0.9), det((0, 0, 9, 9), 0.8), det((5, 0, 14, 9), 0.7)]}
    assert len(keep_detections(raw, None)["cup"]) == 3  # GenEval's default max_overlap=1: off
    kept = keep_detections(raw, None, max_overlap=0.5)["cup"]
    assert [d.score for d in kept] == [0.9, 0.7]  # the duplicate goes; IoU 1/3 stays


# -- positions ---------------------------------------------------------------------------------------


def test_plain_left_of():
    # centres 20 apart; margin 0.1 × (10 + 10) = 2 → shrunk offset -18, / 20 = -0.9.
    assert relative_position((0, 0, 10, 10), (20, 0, 30, 10)) == {"left of"}
    assert relative_position((20, 0, 30, 10), (0, 0, 10, 10)) == {"right of"}


def test_above_and_below_use_image_y_down():
    assert relative_position((0, 0, 10, 10), (0, 30, 10, 40)) == {"above"}
    assert relative_position((0, 30, 10, 40), (0, 0, 10, 10)) == {"below"}


def test_within_the_margin_is_no_relation():
    # offset 2, margin 2: nothing left.
    assert relative_position((0, 0, 10, 10), (2, 0, 12, 10)) == set()


def test_diagonal_gives_both_or_one():
    # offset (-10, -10), shrunk (-8, -8), norm 14.14: -0.566 on both axes.
    assert relative_position((-5, -5, 5, 5), (5, 5, 15, 15)) == {"left of", "above"}
    # offset (-10, -4), shrunk (-8, -2), norm 10.77: -0.743 and -0.186.
    assert relative_position((-5, -2, 5, 8), (5, 2, 15, 12)) == {"left of"}


# -- evaluate ----------------------------------------------------------------------------------------

COUNTING = ([{"class": "cup", "count": 3}], [{"class": "cup", "count": 4}])


@pytest.mark.parametrize(
    ("n", "correct", "reasons"),
    [
        (3, True, []),
        (4, False, ["expected cup<4, found 4"]),
        (2, False, ["expected cup>=3, found 2"]),
    ],
)
def test_counting_is_exact(n, correct, reasons):
    detected = {"cup": [det((i * 20, 0, i * 20 + 10, 10)) for i in range(n)]}
    assert evaluate(detected, *COUNTING, colors_of=None) == (correct, reasons)


def test_colour_checks_only_the_most_confident():
    detected = {"cup": [det((0, 0, 10, 10), 0.9), det((20, 0, 30, 10), 0.8)]}
    seen = []

    def colors_of(cls, dets):
        seen.append((cls, len(dets)))
        return ["blue", "red"][: len(dets)]

    ok, reasons = evaluate(detected, [{"class": "cup", "count": 1, "color": "red"}], [], colors_of=colors_of)
    assert seen == [("cup", 1)]  # GenEval classifies the `count` most confident only
    assert (ok, reasons) == (False, ["expected red cup>=1, found 0 red; and 1 blue"])
    ok, _ = evaluate(detected, [{"class": "cup", "count": 1, "color": "blue"}], [], colors_of=colors_of)
    assert ok


def test_colour_tally_lists_colours_in_geneval_order():
    detected = {"cup": [det((0, 0, 1, 1)) for _ in range(3)]}
    _, reasons = evaluate(
        detected,
        [{"class": "cup", "count": 3, "color": "red"}],
        [],
        colors_of=lambda cls, d: ["white", "red", "orange"],
    )
    assert reasons == ["expected red cup>=3, found 1 red; and 1 red, 1 orange, 1 white"]


def test_colour_rows_need_a_colour_classifier():
    with pytest.raises(ValueError, match="cannot see colours"):
        evaluate({"cup": [det((0, 0, 1, 1))]}, [{"class": "cup", "color": "red"}], [], colors_of=None)


ROW = [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}]


def test_position_holds():
    detected = {"teddy bear": [det((0, 0, 10, 10))], "dog": [det((20, 0, 30, 10))]}
    assert evaluate(detected, ROW, [], colors_of=None) == (True, [])


def test_position_fails_with_the_true_relation():
    detected = {"teddy bear": [det((20, 0, 30, 10))], "dog": [det((0, 0, 10, 10))]}
    assert evaluate(detected, ROW, [], colors_of=None) == (
        False,
        ["expected dog right of target, found left of target"],
    )


def test_position_without_its_target():
    ok, reasons = evaluate({"dog": [det((20, 0, 30, 10))]}, ROW, [], colors_of=None)
    assert reasons == ["expected teddy bear>=1, found 0", "no target for dog to be right of"]


def test_every_pair_must_hold():
    # Two dogs must both be right of the bear; the second is left of it.
    row = [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 2, "position": ["right of", 0]}]
    detected = {"teddy bear": [det((20, 0, 30, 10))], "dog": [det((40, 0, 50, 10)), det((0, 0, 10, 10), 0.9)]}
    assert evaluate(detected, row, [], colors_of=None)[1] == [
        "expected dog right of target, found left of target"
    ]


@pytest.mark.parametrize(
    ("reason", "kind", "cls"),
    [
        ("expected cup>=2, found 1", "count", "cup"),
        ("expected teddy bear>=1, found 0", "missing", "teddy bear"),
        ("expected cup<3, found 3", "extra", "cup"),
        ("expected red cup>=1, found 0 red; and 1 blue", "color", "cup"),
        ("expected dog right of target, found left of target", "position", "dog"),
        ("no target for dog to be right of", "position", "dog"),
        ("something else", "other", None),
    ],
)
def test_reasons_become_typed_violations(reason, kind, cls):
    v = violation_from_reason(reason, COLORS)
    assert (v.kind, v.cls, v.message) == (kind, cls, reason)
