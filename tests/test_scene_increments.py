"""Increments: the paper's build order (layout, main, related, attributes), capped by max_steps."""

from __future__ import annotations

import pytest

from strokeagent.scene import Increment, parse_prompt, plan_increments
from strokeagent.scene.geneval import generate_suite, graph_from_item

ORDER = {"layout": 0, "main": 1, "related": 2, "attributes": 3}


def steps(prompt: str, max_steps: int = 5) -> list[tuple[str, list[str], str, str]]:
    return [
        (i.kind, i.object_ids, i.instruction, i.description)
        for i in plan_increments(parse_prompt(prompt), max_steps=max_steps)
    ]


def test_single_object_is_one_step():
    assert steps("a photo of a bench") == [("main", ["o0"], "Draw a bench.", "A bench.")]


def test_counting_is_one_step_with_the_count_in_words():
    assert steps("a photo of four giraffes") == [("main", ["o0"], "Draw four giraffes.", "Four giraffes.")]


def test_colour_goes_with_the_object():
    assert steps("a photo of two red apples and a blue cup") == [
        ("main", ["o0"], "Draw two red apples.", "Two red apples."),
        ("main", ["o1"], "Add a blue cup.", "Two red apples and a blue cup."),
    ]


def test_position_draws_the_anchor_first():
    assert steps("a photo of a dog right of a teddy bear") == [
        ("main", ["o1"], "Draw a teddy bear.", "A teddy bear."),
        (
            "related",
            ["o0"],
            "Add a dog to the right of the teddy bear.",
            "A teddy bear and a dog to the right of the teddy bear.",
        ),
    ]


def test_layout_first_and_attributes_last():
    plan = plan_increments(parse_prompt("a small wooden chair in a kitchen"))
    assert [(i.kind, i.object_ids, i.attributes_of) for i in plan] == [
        ("layout", [], []),
        ("main", ["o0"], []),
        ("attributes", [], ["o0"]),
    ]
    assert plan[0].instruction == "Lay out the background: kitchen."
    assert plan[1].description == "A chair, against a kitchen backdrop."
    assert plan[2].instruction == "Make the chair small and wooden."
    assert plan[2].description == "A small wooden chair, against a kitchen backdrop."


def test_places_in_the_frame_are_attributes():
    plan = plan_increments(parse_prompt("a cat on the left and a big dog on the right"))
    assert plan[-1].instruction == "Make the dog big. Move the cat on the left and the dog on the right."
    assert plan[-1].description == "A cat on the left and a big dog on the right."


def test_chained_relations_place_each_anchor_before_its_subject():
    assert [s[:3] for s in steps("a cup on a table next to a chair")] == [
        ("main", ["o2"], "Draw a chair."),
        ("related", ["o1"], "Add a table next to the chair."),
        ("related", ["o0"], "Add a cup on top of the table."),
    ]


def test_relation_cycle_is_broken_at_the_first_mention():
    assert [s[:2] for s in steps("a cat left of a dog and the dog right of the cat")] == [
        ("main", ["o0"]),
        ("related", ["o1"]),
    ]


def test_people_read_naturally():
    assert steps("two men and a woman")[0][2] == "Draw two men."
    assert steps("an orange apple")[0][2] == "Draw an orange apple."


def test_no_objects_no_background_no_increments():
    assert plan_increments(parse_prompt("")) == []


def test_background_only_is_one_layout_step():
    assert [i.kind for i in plan_increments(parse_prompt("at night"))] == ["layout"]


def test_max_steps_merges_and_keeps_every_object_once():
    graph = parse_prompt("a cat, a dog, a cup, a bench, a car, a bus, a kite and a fork on a beach")
    plan = plan_increments(graph, max_steps=3)
    assert len(plan) == 3
    added = [i for inc in plan for i in inc.object_ids]
    assert sorted(added) == sorted(o.id for o in graph.objects)
    assert plan[0].kind == "layout"
    assert plan[-1].description == plan_increments(graph, max_steps=20)[-1].description


def test_max_steps_one_is_one_increment():
    plan = plan_increments(parse_prompt("a small cat left of a red dog in a park"), max_steps=1)
    assert len(plan) == 1 and plan[0].object_ids == ["o1", "o0"] and plan[0].attributes_of == ["o0"]


def test_max_steps_must_be_positive():
    with pytest.raises(ValueError, match="max_steps"):
        plan_increments(parse_prompt("a cat"), max_steps=0)


def test_increments_are_frozen():
    inc = plan_increments(parse_prompt("a cat"))[0]
    assert isinstance(inc, Increment)
    with pytest.raises(ValueError):
        inc.instruction = "x"  # type: ignore[misc]


PROMPTS = [
    "a photo of a cup and a bench",
    "three dragons on a beach at night",
    "a red apple left of a blue cup, a small dog under the table and two wooden chairs",
    "a cat on top of a car behind a bus near a tree in a park",
    "a big bird above a tall giraffe",
]


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("max_steps", [1, 2, 3, 5, 8])
def test_invariants(prompt, max_steps):
    graph = parse_prompt(prompt)
    plan = plan_increments(graph, max_steps=max_steps)
    assert 1 <= len(plan) <= max_steps
    added = [i for inc in plan for i in inc.object_ids]
    assert sorted(added) == sorted(o.id for o in graph.objects)  # every object exactly once
    kinds = [ORDER[inc.kind] for inc in plan]
    assert kinds == sorted(kinds)  # layout -> main -> related -> attributes
    seen: set[str] = set()
    for inc in plan:  # an anchor is on the canvas before its subject (or in the same increment)
        seen |= set(inc.object_ids)
        for r in graph.relations:
            if r.subject in inc.object_ids and r.object not in seen:
                assert any(r2.subject == r.object for r2 in graph.relations)  # only in a cycle
    assert all(inc.instruction.endswith(".") and inc.instruction[0].isupper() for inc in plan)


def test_geneval_suite_takes_one_or_two_steps():
    for item in generate_suite(553, seed=1):
        plan = plan_increments(graph_from_item(item))
        expected = 1 if item.tag in ("single_object", "counting", "colors") else 2
        assert len(plan) == expected, item.prompt
