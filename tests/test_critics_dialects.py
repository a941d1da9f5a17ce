"""One evaluator, two dialects: GenEval's own, and the canvas judge's departures from it."""

from strokeagent.critics.canvas import judge
from strokeagent.critics.rules import CANVAS, GENEVAL, Detection, evaluate
from strokeagent.sketch.document import Drawn, SketchDocument
from strokeagent.sketch.palette import named_colors

# The more confident cup is blue, the other red; the row asks for one of each.
CUPS = {"cup": [Detection((0, 0, 10, 10), 0.9), Detection((20, 0, 30, 10), 0.8)]}
RED_AND_BLUE = [{"class": "cup", "count": 1, "color": "red"}, {"class": "cup", "count": 1, "color": "blue"}]


def colors_of(cls, dets):
    return ["blue" if d.score == 0.9 else "red" for d in dets]


def test_geneval_checks_the_most_confident_whatever_its_colour():
    assert evaluate(CUPS, RED_AND_BLUE, [], colors_of=colors_of, dialect=GENEVAL) == (
        False,
        ["expected red cup>=1, found 0 red; and 1 blue"],
    )


def test_the_canvas_ranks_instances_in_the_asked_colour_first():
    assert evaluate(CUPS, RED_AND_BLUE, [], colors_of=colors_of, dialect=CANVAS) == (True, [])
    # Colour first, not colour only: one red cup cannot be two.
    two_red = [{"class": "cup", "count": 2, "color": "red"}]
    assert evaluate(CUPS, two_red, [], colors_of=colors_of, dialect=CANVAS) == (
        False,
        ["expected red cup>=2, found 1 red, 1 blue"],
    )


def test_the_canvas_judges_predicates_geneval_lacks():
    detected = {"bench": [Detection((0, 50, 40, 80), 0.9)], "cup": [Detection((10, 20, 30, 40), 0.9)]}
    row = [{"class": "bench", "count": 1}, {"class": "cup", "count": 1, "position": ["on top of", 0]}]
    assert evaluate(detected, row, [], colors_of=None, dialect=CANVAS) == (True, [])
    assert evaluate(detected, row, [], colors_of=None) == (
        False,
        ["expected cup on top of target, found above target"],
    )


def test_the_judge_speaks_the_canvas_dialect():
    # The larger cup (first among the "detections") is blue; the red one is smaller.
    doc = SketchDocument(size=512)
    for i, (colour, box) in enumerate([("blue", (20, 20, 220, 220)), ("red", (300, 300, 400, 400))]):
        doc = doc.add(
            Drawn(
                iid=0,
                object_id=f"o{i}",
                cls="cup",
                supercategory="kitchen",
                rgb=named_colors()[colour],
                box=box,
            )
        )
    assert judge(RED_AND_BLUE, doc) == (True, [])
