"""The judge: GenEval's rules on hand-built canvases, read from their pixels."""

from __future__ import annotations

import pytest

from strokeagent.critics.canvas import judge
from strokeagent.scene import parse_prompt
from strokeagent.sketch.document import Drawn, SketchDocument
from strokeagent.sketch.glyphs import render
from strokeagent.sketch.measure import HIDDEN_THRESHOLD, inspect
from strokeagent.sketch.palette import named_colors

SC = {"apple": "food", "cup": "kitchen", "dog": "animal", "teddy bear": "indoor", "bench": "outdoor"}


def canvas(
    *items: tuple[str, tuple[int, int, int, int]] | tuple[str, tuple[int, int, int, int], str],
) -> SketchDocument:
    doc = SketchDocument(size=512)
    for i, (cls, box, *colour) in enumerate(items):
        rgb = named_colors()[colour[0]] if colour else (190, 190, 190)
        doc = doc.add(Drawn(iid=0, object_id=f"o{i}", cls=cls, supercategory=SC[cls], rgb=rgb, box=box))
    return doc


def test_counts_follow_the_hidden_threshold() -> None:
    # An apple, and a cup slid over it step by step: the apple counts while half of it shows
    # (the document's answer key says how much shows; the judge sees only the pixels).
    crossed = set()
    for dx in range(-100, 1, 4):
        doc = canvas(("apple", (200, 200, 300, 300), "red"), ("cup", (200 + dx, 190, 300 + dx, 310), "blue"))
        apple = inspect(render(doc)[0], doc)[0]
        counted = apple.visible_fraction >= HIDDEN_THRESHOLD
        if abs(apple.visible_fraction - HIDDEN_THRESHOLD) < 0.03:
            continue  # at the threshold itself the pixels cannot tell a percent or two
        ok, reasons = judge([{"class": "apple", "count": 1}], doc)
        assert ok == counted, (dx, apple.visible, reasons)
        crossed.add(counted)
    assert crossed == {True, False}


def test_counting_is_exact_with_exclude() -> None:
    row = {
        "tag": "counting",
        "include": [{"class": "apple", "count": 2}],
        "exclude": [{"class": "apple", "count": 3}],
    }
    two = canvas(("apple", (10, 10, 90, 90)), ("apple", (200, 10, 280, 90)))
    three = canvas(("apple", (10, 10, 90, 90)), ("apple", (200, 10, 280, 90)), ("apple", (400, 10, 480, 90)))
    one = canvas(("apple", (10, 10, 90, 90)))
    assert judge(row, two) == (True, [])
    assert judge(row, three) == (False, ["expected apple<3, found 3"])
    assert judge(row, one) == (False, ["expected apple>=2, found 1"])
    # Without exclude, GenEval's include means "at least".
    assert judge(row["include"], three)[0]


@pytest.mark.parametrize(
    ("relation", "dog_box"),
    [("left of", (20, 200, 120, 280)), ("right of", (380, 200, 480, 280)),
     ("above", (200, 20, 300, 100)), ("below", (200, 400, 300, 480))],
)  # fmt: skip
def test_each_position(relation: str, dog_box: tuple[int, int, int, int]) -> None:
    doc = canvas(("teddy bear", (200, 200, 300, 290)), ("dog", dog_box))
    row = [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": [relation, 0]}]
    assert judge(row, doc) == (True, [])
    opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[relation]
    row[1]["position"] = [opposite, 0]
    assert judge(row, doc) == (False, [f"expected dog {opposite} teddy bear"])


def test_position_margin_needs_clear_separation() -> None:
    # Side by side but barely offset: inside GenEval's margin, so neither left nor right.
    doc = canvas(("teddy bear", (200, 200, 300, 290)), ("dog", (215, 60, 315, 150)))
    row = [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}]
    assert not judge(row, doc)[0]
    missing = [{"class": "cup", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}]
    ok, reasons = judge(missing, doc)
    assert not ok and "no target for dog to be right of" in reasons


def test_colours_are_measured_from_pixels() -> None:
    doc = canvas(("cup", (20, 20, 120, 120), "blue"), ("apple", (300, 20, 400, 120), "red"))
    row = {
        "include": [
            {"class": "cup", "count": 1, "color": "blue"},
            {"class": "apple", "count": 1, "color": "red"},
        ]
    }
    assert judge(row, doc) == (True, [])
    purple = canvas(("cup", (20, 20, 120, 120), "purple"))
    ok, reasons = judge([{"class": "cup", "count": 1, "color": "blue"}], purple)
    assert not ok and reasons == ["expected blue cup>=1, found 1 purple"]


def test_scene_graphs_are_judged_with_exact_counts_and_all_relations() -> None:
    graph = parse_prompt("two red apples and a blue cup on top of a bench")
    ids = {o.cls: o.id for o in graph.objects}
    good = canvas(("apple", (20, 20, 100, 100), "red"), ("apple", (20, 300, 100, 380), "red"),
                  ("cup", (260, 100, 340, 180), "blue"), ("bench", (240, 220, 360, 330)))  # fmt: skip
    assert set(ids) == {"apple", "cup", "bench"}
    assert judge(graph, good) == (True, [])
    off = canvas(("apple", (20, 20, 100, 100), "red"), ("apple", (20, 300, 100, 380), "red"),
                 ("cup", (400, 100, 480, 180), "blue"), ("bench", (200, 220, 320, 330)))  # fmt: skip
    assert judge(graph, off) == (False, ["expected cup on top of bench"])
    three = good.add(Drawn(iid=0, object_id="o9", cls="apple", supercategory="food", rgb=(220, 20, 20),
                           box=(400, 400, 480, 480)))  # fmt: skip
    assert judge(graph, three) == (False, ["expected apple<3, found 3"])


def test_judge_accepts_canvases_documents_and_meta() -> None:
    from strokeagent.core.stages import Canvas

    doc = canvas(("dog", (20, 20, 120, 120)))
    item = [{"class": "dog", "count": 1}]
    assert judge(item, doc)[0]
    assert judge(item, doc.to_meta())[0]
    assert judge(item, doc.model_dump(mode="json"))[0]
    assert judge(item, Canvas(render(doc)[0], doc.to_meta()))[0]
