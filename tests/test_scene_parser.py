"""The rule parser: GenEval's grammar, free-form prompts, and bad input that must not crash."""

from __future__ import annotations

import pytest

from strokeagent.scene import (
    COCO_CLASSES,
    COLORS,
    MAX_COUNT,
    MAX_OBJECTS,
    RuleParser,
    SceneGraph,
    SceneParser,
    parse_prompt,
)
from strokeagent.scene.vocab import GENEVAL_COLORS, geneval_plural, lookup_noun, pluralize


def summary(graph: SceneGraph) -> tuple[list[tuple], list[tuple], str | None]:
    """(objects as (cls, count, color, attributes, known), relations as (subject, predicate, object), background)."""
    objects = [(o.cls, o.count, o.color, o.attributes, o.known) for o in graph.objects]
    relations = [(r.subject, r.predicate, r.object) for r in graph.relations]
    return objects, relations, graph.background


def obj(
    cls: str,
    count: int = 1,
    color: str | None = None,
    attributes: list[str] | None = None,
    known: bool = True,
):
    return (cls, count, color, attributes or [], known)


CASES = [
    # GenEval's six templates
    ("a photo of a bench", [obj("bench")], [], None),
    ("a photo of an airplane", [obj("airplane")], [], None),
    ("a photo of a cup and a bench", [obj("cup"), obj("bench")], [], None),
    ("a photo of a bench and a sports ball", [obj("bench"), obj("sports ball")], [], None),
    ("a photo of four giraffes", [obj("giraffe", 4)], [], None),
    ("a photo of two clocks", [obj("clock", 2)], [], None),
    ("a photo of three wine glasses", [obj("wine glass", 3)], [], None),
    ("a photo of a red cup", [obj("cup", color="red")], [], None),
    ("a photo of an orange fire hydrant", [obj("fire hydrant", color="orange")], [], None),
    (
        "a photo of a dog right of a teddy bear",
        [obj("dog"), obj("teddy bear")],
        [("o0", "right of", "o1")],
        None,
    ),
    ("a photo of a tv above a hot dog", [obj("tv"), obj("hot dog")], [("o0", "above", "o1")], None),
    ("a photo of a car below a cell phone", [obj("car"), obj("cell phone")], [("o0", "below", "o1")], None),
    (
        "a photo of a fork left of a tv remote",
        [obj("fork"), obj("tv remote")],
        [("o0", "left of", "o1")],
        None,
    ),
    (
        "a photo of a red apple and a blue cup",
        [obj("apple", color="red"), obj("cup", color="blue")],
        [],
        None,
    ),
    (
        "a photo of a purple wine glass and a black apple",
        [obj("wine glass", color="purple"), obj("apple", color="black")],
        [],
        None,
    ),
    (
        "a photo of two red apples and a blue cup",
        [obj("apple", 2, "red"), obj("cup", 1, "blue")],
        [],
        None,
    ),
    # "orange" is a colour and a class
    ("a photo of an orange", [obj("orange")], [], None),
    ("a photo of an orange orange", [obj("orange", color="orange")], [], None),
    ("an orange and a blue cup", [obj("orange"), obj("cup", color="blue")], [], None),
    # longest class wins
    ("a hot dog and a dog", [obj("hot dog"), obj("dog")], [], None),
    ("a teddy bear next to a bear", [obj("teddy bear"), obj("bear")], [("o0", "next to", "o1")], None),
    ("a computer mouse and a tv remote", [obj("computer mouse"), obj("tv remote")], [], None),
    # more relations
    ("a cat on top of a car", [obj("cat"), obj("car")], [("o0", "on top of", "o1")], None),
    ("a cup on a dining table", [obj("cup"), obj("dining table")], [("o0", "on top of", "o1")], None),
    ("a dog under a bench", [obj("dog"), obj("bench")], [("o0", "under", "o1")], None),
    ("a cat beneath a chair", [obj("cat"), obj("chair")], [("o0", "under", "o1")], None),
    ("a bike beside a bus", [obj("bicycle"), obj("bus")], [("o0", "next to", "o1")], None),
    ("a kite near a boat", [obj("kite"), obj("boat")], [("o0", "near", "o1")], None),
    ("a horse in front of a truck", [obj("horse"), obj("truck")], [("o0", "in front of", "o1")], None),
    ("a cow behind a fence", [obj("cow"), obj("fence", known=False)], [("o0", "behind", "o1")], None),
    ("a vase to the left of a book", [obj("vase"), obj("book")], [("o0", "left of", "o1")], None),
    ("a vase to the right of a book", [obj("vase"), obj("book")], [("o0", "right of", "o1")], None),
    ("a vase on the left of a book", [obj("vase"), obj("book")], [("o0", "left of", "o1")], None),
    ("the cat is to the left of the dog", [obj("cat"), obj("dog")], [("o0", "left of", "o1")], None),
    (
        "a cup on a table next to a chair",
        [obj("cup"), obj("dining table"), obj("chair")],
        [("o0", "on top of", "o1"), ("o1", "next to", "o2")],
        None,
    ),
    (
        "a cat and a dog. the cat is left of the dog",
        [obj("cat"), obj("dog")],
        [("o0", "left of", "o1")],
        None,
    ),
    # attributes, places in the frame, post-nominal colours
    ("a small wooden chair", [obj("chair", attributes=["small", "wooden"])], [], None),
    ("a big red bus", [obj("bus", color="red", attributes=["big"])], [], None),
    ("a cup that is red", [obj("cup", color="red")], [], None),
    ("a grey cat", [obj("cat", color="gray")], [], None),
    (
        "a cat on the left and a dog on the right",
        [obj("cat", attributes=["on the left"]), obj("dog", attributes=["on the right"])],
        [],
        None,
    ),
    # background
    ("a dog on a beach", [obj("dog")], [], "beach"),
    ("a toaster in a kitchen", [obj("toaster")], [], "kitchen"),
    ("a bench in a park at night", [obj("bench")], [], "park, night"),
    ("three dragons on a sunny beach", [obj("dragon", 3, known=False)], [], "sunny beach"),
    ("a cat sitting on a bench in a park", [obj("cat"), obj("bench")], [("o0", "on top of", "o1")], "park"),
    # unknown nouns, synonyms, plurals
    ("a red dragon", [obj("dragon", color="red", known=False)], [], None),
    ("two men and a woman", [obj("person", 2), obj("person")], [], None),
    ("three people", [obj("person", 3)], [], None),
    ("a sofa and a television", [obj("couch"), obj("tv")], [], None),
    ("a cellphone and a laptop computer", [obj("cell phone"), obj("laptop")], [], None),
    ("a pair of scissors", [obj("scissors")], [], None),
    ("a pair of skis", [obj("skis")], [], None),
    ("a couple of mice", [obj("computer mouse", 2)], [], None),
    ("several knives", [obj("knife", 3)], [], None),
    ("a few sheep", [obj("sheep", 3)], [], None),
    ("many buses", [obj("bus", 5)], [], None),
    ("apples", [obj("apple", 2)], [], None),
    ("7 benches", [obj("bench", 7)], [], None),
    ("twelve donuts", [obj("donut", 12)], [], None),
    ("a herd of elephants", [obj("elephant", 3)], [], None),
    # GenEval's naive plurals
    ("a photo of two sandwichs", [obj("sandwich", 2)], [], None),
    ("a photo of four knifes", [obj("knife", 4)], [], None),
    ("a photo of three persons", [obj("person", 3)], [], None),
    ("a photo of two sheeps", [obj("sheep", 2)], [], None),
    ("a photo of four benchs", [obj("bench", 4)], [], None),
    ("a photo of two skises", [obj("skis", 2)], [], None),
    # verbs and comparisons between noun phrases
    ("a man riding a horse", [obj("person"), obj("horse")], [("o0", "on top of", "o1")], None),
    ("a dog chasing a ball in the park", [obj("dog"), obj("sports ball")], [], "park"),
    (
        "two cats sleeping on a red couch",
        [obj("cat", 2), obj("couch", color="red")],
        [("o0", "on top of", "o1")],
        None,
    ),
    ("a sleeping cat", [obj("cat")], [], None),
    ("a giraffe taller than a bus", [obj("giraffe"), obj("bus")], [], None),
    ("a parking meter", [obj("parking meter")], [], None),
    # framing and punctuation
    ("A high-quality watercolor painting of a Red Cup!", [obj("cup", color="red")], [], None),
    ("Draw a cat, a dog & a bird.", [obj("cat"), obj("dog"), obj("bird")], [], None),
]


@pytest.mark.parametrize(("prompt", "objects", "relations", "background"), CASES)
def test_parses_to_the_expected_graph(prompt, objects, relations, background):
    graph = parse_prompt(prompt)
    assert summary(graph) == (objects, relations, background)
    assert [o.id for o in graph.objects] == [f"o{i}" for i in range(len(objects))]


@pytest.mark.parametrize(("prompt", "objects", "relations", "background"), CASES)
def test_clean_prompts_drop_nothing(prompt, objects, relations, background):
    graph = parse_prompt(prompt)
    unknown = [o for o in graph.objects if not o.known]
    if len(unknown) < len(graph.objects):  # all-unknown scenes say so in dropped
        assert graph.dropped == []


def test_nouns_and_supercategories_are_kept():
    graph = parse_prompt("two red apples and a dragon")
    apples, dragon = graph.objects
    assert (apples.noun, apples.supercategory) == ("apples", "food")
    assert (dragon.noun, dragon.supercategory, dragon.known) == ("dragon", "generic", False)


@pytest.mark.parametrize(
    ("prompt", "objects", "relations", "note"),
    [
        ("a red blue cup", [obj("cup", color="red")], [], "'blue' contradicts 'red' for cup; kept 'red'"),
        ("a red and blue cup", [obj("cup", color="red")], [], "'blue' contradicts 'red'"),
        ("a cat left of itself", [obj("cat")], [], "self-relation"),
        # "a cat left of a cat" is two cats (tests/test_scene_freeform.py); "the cat" is the same one
        ("a cat left of the cat", [obj("cat")], [], "self-relation"),
        ("a cat next to each other", [obj("cat")], [], "self-relation"),
        ("a million cats", [obj("cat", MAX_COUNT)], [], f"'a million' cats capped to {MAX_COUNT}"),
        ("500 dogs", [obj("dog", MAX_COUNT)], [], f"capped to {MAX_COUNT}"),
        ("no cats and a dog", [obj("dog")], [], "asks for none"),
        ("a cat in a box", [obj("cat"), obj("box", known=False)], [], "'in' is not a relation"),
        ("a cat left of", [obj("cat")], [], "has no object after it"),
        ("left of a cat", [obj("cat")], [], "has no subject"),
        (
            "un chat rouge sur la table",
            [obj("dining table", attributes=["chat", "rouge"])],
            [],
            "non-English",
        ),
        ("一只猫", [], [], "non-English words ignored: 一只猫"),
        ("asdf blorp", [obj("blorp", known=False, attributes=["asdf"])], [], "no known object class"),
        ("xkcd zzz", [], [], "'zzz' is not a word"),
        ("", [], [], "no drawable noun"),
        ("!!! ???", [], [], "no drawable noun"),
        ("a photo of", [], [], "no drawable noun"),
        ("big red", [], [], "'big red' has no noun"),
        ("the the the", [], [], "no drawable noun"),
        ("of and the", [], [], "no drawable noun"),
    ],
)
def test_bad_input_is_dropped_with_a_note(prompt, objects, relations, note):
    graph = parse_prompt(prompt)
    assert summary(graph)[:2] == (objects, relations)
    assert any(note in d for d in graph.dropped), graph.dropped


def test_a_cat_left_of_a_differently_coloured_cat_is_two_cats():
    graph = parse_prompt("a black cat left of a white cat")
    assert summary(graph)[:2] == (
        [obj("cat", color="black"), obj("cat", color="white")],
        [("o0", "left of", "o1")],
    )
    assert graph.dropped == []


def test_too_many_kinds_keeps_the_first_max_objects():
    names = ["cat", "dog", "cup", "bench", "car", "bus", "kite", "fork", "spoon", "vase"]
    graph = parse_prompt("a photo of " + ", ".join(f"a {n}" for n in names))
    assert [o.cls for o in graph.objects] == names[:MAX_OBJECTS]
    assert graph.dropped == [
        f"more than {MAX_OBJECTS} kinds of object; dropped 'a spoon'",
        f"more than {MAX_OBJECTS} kinds of object; dropped 'a vase'",
    ]


def test_relations_to_dropped_objects_are_dropped_too():
    graph = parse_prompt(
        ", ".join(f"a {n}" for n in ["cat", "dog", "cup", "bench", "car", "bus", "kite", "fork"])
        + " left of a vase"
    )
    assert len(graph.objects) == MAX_OBJECTS and graph.relations == []
    assert any("its object was dropped" in d for d in graph.dropped)


def test_very_long_prompt_does_not_crash_and_relations_are_valid():
    prompt = (
        " and ".join(
            f"a {c} left of a {d}"
            for c, d in zip(list(COCO_CLASSES)[::2], list(COCO_CLASSES)[1::2], strict=True)
        )
        * 5
    )
    graph = parse_prompt(prompt)
    ids = {o.id for o in graph.objects}
    assert len(graph.objects) == MAX_OBJECTS
    assert all(r.subject in ids and r.object in ids and r.subject != r.object for r in graph.relations)


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        " ",
        "a",
        "the",
        "of of of",
        "left of right of above",
        "1 2 3",
        "a 99999999999999999999 cats",
        "\x00\n\t",
        "a a a a",
        "🐱 and 🐶",
        "a cat" * 500,
        "itself left of itself",
        "and and and",
        "a, , , ,",
    ],
)
def test_odd_input_never_crashes(prompt):
    graph = parse_prompt(prompt)
    ids = {o.id for o in graph.objects}
    assert all(r.subject in ids and r.object in ids for r in graph.relations)
    assert all(1 <= o.count <= MAX_COUNT for o in graph.objects)
    assert len(graph.objects) <= MAX_OBJECTS


def test_deterministic():
    prompt = "two red apples left of a blue cup on a beach, and a small dragon"
    assert parse_prompt(prompt) == parse_prompt(prompt)
    assert parse_prompt(prompt).model_dump_json() == RuleParser().parse(prompt).model_dump_json()


def test_parse_prompt_takes_any_scene_parser():
    class Fixed:
        def parse(self, prompt: str) -> SceneGraph:
            return SceneGraph(prompt=prompt, background="fixed")

    assert isinstance(Fixed(), SceneParser) and isinstance(RuleParser(), SceneParser)
    assert parse_prompt("a cat", parser=Fixed()).background == "fixed"


# -- vocabulary ----------------------------------------------------------------------------------


def test_vocabulary_is_genevals():
    assert len(COCO_CLASSES) == 80
    assert list(COCO_CLASSES)[:5] == ["person", "bicycle", "car", "motorcycle", "airplane"]
    assert list(COCO_CLASSES)[-2:] == ["hair drier", "toothbrush"]
    assert set(COCO_CLASSES.values()) == {
        "person", "vehicle", "outdoor", "animal", "accessory", "sports",
        "kitchen", "food", "furniture", "electronic", "appliance", "indoor",
    }  # fmt: skip
    assert GENEVAL_COLORS == (
        "red",
        "orange",
        "yellow",
        "green",
        "blue",
        "purple",
        "pink",
        "brown",
        "black",
        "white",
    )


def test_colours_are_far_apart():
    values = list(COLORS.values())
    closest = min(
        sum((a - b) ** 2 for a, b in zip(x, y, strict=True)) ** 0.5
        for i, x in enumerate(values)
        for y in values[i + 1 :]
    )
    assert closest > 60


@pytest.mark.parametrize("cls", list(COCO_CLASSES))
def test_every_class_parses_singular_plural_and_genevals_plural(cls):
    article = "an" if cls[0] in "aeiou" else "a"
    assert summary(parse_prompt(f"a photo of {article} {cls}"))[0] == [obj(cls)]
    assert summary(parse_prompt(f"a photo of three {pluralize(cls)}"))[0] == [obj(cls, 3)]
    assert summary(parse_prompt(f"a photo of three {geneval_plural(cls)}"))[0] == [obj(cls, 3)]


@pytest.mark.parametrize(
    ("written", "cls", "plural"),
    [("people", "person", True), ("mice", "computer mouse", True), ("knives", "knife", True),
     ("sheep", "sheep", False), ("skis", "skis", False), ("scissors", "scissors", False),
     ("wine glasses", "wine glass", True), ("buses", "bus", True), ("benches", "bench", True),
     ("children", "person", True), ("tv", "tv", False), ("television", "tv", False),
     ("phone", "cell phone", False), ("sofas", "couch", True), ("laptop computer", "laptop", False)],
)  # fmt: skip
def test_irregular_plurals_and_synonyms(written, cls, plural):
    form = lookup_noun(written)
    assert form is not None and (form.cls, form.plural) == (cls, plural)
