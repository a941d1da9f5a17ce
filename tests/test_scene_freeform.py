"""Free-form prompts: the issue's cases, what the parser says when it cannot read a prompt,
the free-form set's share (tests/data/freeform_prompts.jsonl), and GenEval's grammar at 100 %."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from strokeagent.scene import COCO_CLASSES, COLORS, SceneGraph, generate_suite, graph_from_item, parse_prompt
from strokeagent.scene.geneval import GENEVAL_POSITIONS
from strokeagent.scene.vocab import COLOR_FAMILIES, GENEVAL_COLORS, NOUN_COLORS

DATA = Path(__file__).parent / "data" / "freeform_prompts.jsonl"


def signature(graph: SceneGraph) -> tuple[list[tuple], set[tuple]]:
    """Objects as (class, count, colour) in order; relations as {(index, predicate, index)}."""
    index = {o.id: i for i, o in enumerate(graph.objects)}
    return (
        [(o.cls, o.count, o.color) for o in graph.objects],
        {(index[r.subject], r.predicate, index[r.object]) for r in graph.relations},
    )


# -- the issue's cases -------------------------------------------------------------------------

ISSUE_CASES = [
    ("a kite on the top of a tree", [("kite", 1, None), ("tree", 1, None)], {(0, "on top of", 1)}),
    ("a bowl on the bottom of a shelf", [("bowl", 1, None), ("shelf", 1, None)], {(0, "below", 1)}),
    ("a dog at the bottom of a tree", [("dog", 1, None), ("tree", 1, None)], {(0, "below", 1)}),
    ("a girl hidden by a desk", [("person", 1, None), ("desk", 1, None)], {(0, "behind", 1)}),
    ("five ducks swam", [("duck", 5, None)], set()),
    ("a gold cup", [("cup", 1, "yellow")], set()),
    (
        "a clock between a vase and a lamp",
        [("clock", 1, None), ("vase", 1, None), ("lamp", 1, None)],
        {(0, "right of", 1), (0, "left of", 2)},
    ),
    ("a pen in front of a pen", [("pen", 1, None), ("pen", 1, None)], {(0, "in front of", 1)}),
]


@pytest.mark.parametrize(("prompt", "objects", "relations"), ISSUE_CASES)
def test_the_issues_prompts(prompt, objects, relations):
    graph = parse_prompt(prompt)
    assert signature(graph) == (objects, relations)
    # nothing misread, so nothing to confess beyond "every object is generic" where that holds
    assert all("no known object class" in d for d in graph.dropped), graph.dropped


@pytest.mark.parametrize(
    ("prompt", "objects", "relations"),
    [
        # relations written many ways
        ("a cat on top of a car", [("cat", 1, None), ("car", 1, None)], {(0, "on top of", 1)}),
        ("a cat at the top of a car", [("cat", 1, None), ("car", 1, None)], {(0, "on top of", 1)}),
        ("a cat beneath a car", [("cat", 1, None), ("car", 1, None)], {(0, "under", 1)}),
        ("a cat underneath a car", [("cat", 1, None), ("car", 1, None)], {(0, "under", 1)}),
        ("a cat hidden behind a car", [("cat", 1, None), ("car", 1, None)], {(0, "behind", 1)}),
        ("a cat partially hidden by a car", [("cat", 1, None), ("car", 1, None)], {(0, "behind", 1)}),
        ("a cat in the front of a car", [("cat", 1, None), ("car", 1, None)], {(0, "in front of", 1)}),
        ("a cat at the back of a car", [("cat", 1, None), ("car", 1, None)], {(0, "behind", 1)}),
        ("a cat on the left side of a car", [("cat", 1, None), ("car", 1, None)], {(0, "left of", 1)}),
        ("a cat over a car", [("cat", 1, None), ("car", 1, None)], {(0, "above", 1)}),
        ("a cat below a car", [("cat", 1, None), ("car", 1, None)], {(0, "below", 1)}),
        ("a cat beside a car", [("cat", 1, None), ("car", 1, None)], {(0, "next to", 1)}),
        ("a cup between two plates", [("cup", 1, None), ("plate", 2, None)], {(0, "next to", 1)}),
        ("a table with a vase on it", [("dining table", 1, None), ("vase", 1, None)], {(1, "on top of", 0)}),
        (
            "a pink cake with a cherry on top",
            [("cake", 1, "pink"), ("cherry", 1, None)],
            {(1, "on top of", 0)},
        ),
        (
            "a cup in front of a laptop and behind a vase",
            [("cup", 1, None), ("laptop", 1, None), ("vase", 1, None)],
            {(0, "in front of", 1), (0, "behind", 2)},
        ),
        # the same noun twice is two things; "the" names the earlier one
        ("a cat left of a cat", [("cat", 1, None), ("cat", 1, None)], {(0, "left of", 1)}),
        ("a cup next to another cup", [("cup", 1, None), ("cup", 1, None)], {(0, "next to", 1)}),
        # verbs and filler are not objects
        ("there is a dog sitting", [("dog", 1, None)], set()),
        ("a child kicks a ball", [("person", 1, None), ("sports ball", 1, None)], set()),
        ("two girls play with a kite", [("person", 2, None), ("kite", 1, None)], set()),
        ("a man is painting a fence", [("person", 1, None), ("fence", 1, None)], set()),
        ("an image of a cat", [("cat", 1, None)], set()),
        ("a wrist watch", [("watch", 1, None)], set()),
        # counts
        ("a pair of shoes", [("shoe", 2, None)], set()),
        ("a couple of dogs", [("dog", 2, None)], set()),
        ("two pairs of socks", [("sock", 4, None)], set()),
        ("half a dozen donuts", [("donut", 6, None)], set()),
        ("a trio of ducks", [("duck", 3, None)], set()),
        ("3 cats", [("cat", 3, None)], set()),
        # colours beyond GenEval's, and colour words that are things
        ("a silver car", [("car", 1, "gray")], set()),
        ("a beige sofa", [("couch", 1, "brown")], set()),
        ("a navy backpack", [("backpack", 1, "blue")], set()),
        ("a crimson umbrella", [("umbrella", 1, "red")], set()),
        ("a turquoise vase", [("vase", 1, "blue")], set()),
        ("a cup that is gold", [("cup", 1, "yellow")], set()),
        ("a car painted blue", [("car", 1, "blue")], set()),
        ("a cream colored sofa", [("couch", 1, "white")], set()),
        ("a single rose", [("rose", 1, None)], set()),
        ("a rose vase", [("vase", 1, "pink")], set()),
        ("two gold rings", [("ring", 2, "yellow")], set()),
        # contents and materials are attributes, not objects
        ("a cup of coffee", [("cup", 1, None)], set()),
        ("a vase made of glass", [("vase", 1, None)], set()),
    ],
)
def test_free_form_phrasings(prompt, objects, relations):
    assert signature(parse_prompt(prompt)) == (objects, relations)


# -- what the parser cannot read, it says --------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "note"),
    [
        ("a cat between a dog", "'between' needs two objects"),
        ("a kite on the top of", "has no object after it"),
        ("a cat in a box", "'in' is not a relation the canvas can draw"),
        ("a cat on the top", "'top' names a part or a side"),
        ("a dog house", "read 'house' as the object and 'dog' as a modifier"),
        ("a cat near it", "'it' names nothing"),
        ("a cat surrounded by dogs", "'surrounded by' is not a relation the canvas can draw"),
        ("a cat left of the cat", "self-relation"),
    ],
)
def test_what_is_not_understood_is_said(prompt, note):
    graph = parse_prompt(prompt)
    assert any(note in d for d in graph.dropped), graph.dropped


def test_a_misread_is_in_the_trajectory_notes_words():
    """The note names the words, in plain language (the planner copies it into the notes)."""
    graph = parse_prompt("a clock between a vase")
    assert graph.dropped == ["'between' needs two objects (between X and Y); placed next to the one given"]


# -- the free-form set ---------------------------------------------------------------------------

ROWS = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
CATEGORIES = ("spatial", "3d spatial", "non-spatial", "counting", "colour", "texture", "complex")

#: Exactly-right counts achieved (benchmarks/parser_freeform.py); the parser must not fall below.
#: dev: 204 prompts written first (the old parser: 133/204 = 0.652); heldout: 72 written after the
#: first round of changes (old parser 42/72 = 0.583, first measured 68/72 = 0.944, now 71/72).
ACHIEVED = {"dev": 203, "heldout": 71}
ACHIEVED_PER_CATEGORY = {
    "spatial": 50, "3d spatial": 40, "non-spatial": 37, "counting": 38,
    "colour": 40, "texture": 34, "complex": 35,
}  # fmt: skip
#: Prompts read wrong with nothing in ``dropped`` (the old parser: 54).
MAX_SILENT = 2


def test_the_set_is_broad():
    assert len(ROWS) >= 150
    assert {r["category"] for r in ROWS} == set(CATEGORIES)
    assert all(sum(r["category"] == c for r in ROWS) >= 20 for c in CATEGORIES)
    assert len({r["prompt"] for r in ROWS}) == len(ROWS)
    for row in ROWS:
        n = len(row["objects"])
        assert all(o["color"] is None or o["color"] in COLORS for o in row["objects"]), row
        assert all(0 <= i < n and 0 <= j < n and i != j for i, _, j in row["relations"]), row


def test_free_form_share_stays_at_least_what_was_achieved():
    exact: dict[str, int] = defaultdict(int)
    silent = 0
    wrong = []
    for row in ROWS:
        graph = parse_prompt(row["prompt"])
        want = (
            [(o["class"], o["count"], o["color"]) for o in row["objects"]],
            {(i, p, j) for i, p, j in row["relations"]},
        )
        if signature(graph) == want:
            exact[row["split"]] += 1
            exact[row["category"]] += 1
        else:
            wrong.append(row["prompt"])
            silent += not graph.dropped
    for key, floor in {**ACHIEVED, **ACHIEVED_PER_CATEGORY}.items():
        assert exact[key] >= floor, (key, exact[key], wrong)
    assert silent <= MAX_SILENT, wrong


# -- GenEval's own grammar stays at 100 % ----------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 43, 2024])
def test_geneval_suite_parses_exactly(seed):
    for item in generate_suite(553, seed=seed):
        graph = parse_prompt(item.prompt)
        assert signature(graph) == signature(graph_from_item(item)), item.prompt
        assert graph.dropped == [], item.prompt


def test_every_geneval_colour_on_every_class():
    for cls in COCO_CLASSES:
        for color in GENEVAL_COLORS:
            article = "an" if color[0] in "aeiou" else "a"
            graph = parse_prompt(f"a photo of {article} {color} {cls}")
            assert signature(graph) == ([(cls, 1, color)], set()), graph.prompt
            assert graph.dropped == []


def test_every_class_in_every_geneval_position():
    classes = list(COCO_CLASSES)
    for n, a in enumerate(classes):
        for shift in (1, 7, 29):
            b = classes[(n + shift) % len(classes)]
            for relation in GENEVAL_POSITIONS:
                art_a, art_b = ("an" if c[0] in "aeiou" else "a" for c in (a, b))
                graph = parse_prompt(f"a photo of {art_a} {a} {relation} {art_b} {b}")
                assert signature(graph) == ([(a, 1, None), (b, 1, None)], {(0, relation, 1)}), graph.prompt
                assert graph.dropped == []


# -- colour words ----------------------------------------------------------------------------------


def test_colour_families_map_to_drawable_colours():
    assert set(COLOR_FAMILIES.values()) <= set(COLORS)
    for word, color in COLOR_FAMILIES.items():
        assert signature(parse_prompt(f"a {word} cup")) == ([("cup", 1, color)], set()), word


@pytest.mark.parametrize("word", sorted(NOUN_COLORS - {"orange"}))
def test_a_colour_word_alone_is_a_thing(word):
    graph = parse_prompt(f"a {word}")
    assert [o.cls for o in graph.objects] == [word] and graph.objects[0].color is None
