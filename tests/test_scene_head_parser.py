"""The text-head parser: a schema-constrained answer from a head, checked and repaired."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from strokeagent.backends.heads import TextHead
from strokeagent.scene import SceneParser, TextHeadParser
from strokeagent.scene.head_parser import ObjectAnswer, RelationAnswer, SceneGraphAnswer


class ScriptedHead:
    """Answers every chat with a fixed answer (or raises it), and records what it was asked."""

    def __init__(self, answer: SceneGraphAnswer | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[list[dict[str, Any]], type]] = []

    async def chat(self, messages: list[dict[str, Any]], images: Sequence[Any] = (), *, schema: type) -> Any:
        self.calls.append((messages, schema))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


ANSWER = SceneGraphAnswer(
    objects=[
        ObjectAnswer(id="apples", noun="Apples", count=2, color="red", attributes=["shiny"]),
        ObjectAnswer(id="cup", noun="mug", color="Grey"),
        ObjectAnswer(id="dragon", noun="dragons", count=40, color="teal"),
    ],
    relations=[
        RelationAnswer(subject="apples", predicate="left of", object="cup"),
        RelationAnswer(subject="cup", predicate="near", object="table"),
        RelationAnswer(subject="cup", predicate="above", object="cup"),
    ],
    background="Beach",
)


def test_head_answer_is_repaired_into_a_scene_graph():
    head = ScriptedHead(ANSWER)
    assert isinstance(head, TextHead)
    graph = TextHeadParser(head).parse("two shiny red apples left of a grey mug, and dragons, on a beach")
    assert [(o.id, o.cls, o.count, o.color, o.attributes, o.known) for o in graph.objects] == [
        ("o0", "apple", 2, "red", ["shiny"], True),
        ("o1", "cup", 1, "gray", [], True),
        ("o2", "dragon", 12, None, [], False),
    ]
    assert [(r.subject, r.predicate, r.object) for r in graph.relations] == [("o0", "left of", "o1")]
    assert graph.background == "beach"
    assert graph.dropped == [
        "'teal' is not a known colour; dragons kept without colour",
        "40 dragons capped to 12",
        "relation 'cup near table': unknown id 'table'; dropped",
        "self-relation 'cup above cup' dropped",
    ]
    messages, schema = head.calls[0]
    assert schema is SceneGraphAnswer
    assert messages[-1] == {
        "role": "user",
        "content": "two shiny red apples left of a grey mug, and dragons, on a beach",
    }


def test_schema_is_bounded():
    schema = SceneGraphAnswer.model_json_schema()
    assert schema["properties"]["objects"]["maxItems"] == 8
    assert schema["properties"]["relations"]["maxItems"] == 8
    with pytest.raises(ValueError):
        SceneGraphAnswer(objects=[ObjectAnswer(id=f"o{i}", noun="cat") for i in range(9)])


def test_aparse_inside_a_loop_and_parse_refuses_there():
    parser = TextHeadParser(ScriptedHead(ANSWER))

    async def main():
        graph = await parser.aparse("x")
        with pytest.raises(RuntimeError, match="await aparse"):
            parser.parse("x")
        return graph

    assert len(asyncio.run(main()).objects) == 3


def test_failing_head_falls_back_to_rules_and_says_so():
    graph = TextHeadParser(ScriptedHead(TimeoutError("server down"))).parse("a photo of a red cup")
    assert [(o.cls, o.color) for o in graph.objects] == [("cup", "red")]
    assert graph.dropped == ["text head failed (TimeoutError: server down); parsed by rules instead"]


def test_duplicate_ids_and_empty_answers():
    answer = SceneGraphAnswer(objects=[ObjectAnswer(id="a", noun="cat"), ObjectAnswer(id="a", noun="dog")])
    graph = TextHeadParser(ScriptedHead(answer)).parse("a cat")
    assert [o.cls for o in graph.objects] == ["cat"] and "used twice" in graph.dropped[0]
    empty = TextHeadParser(ScriptedHead(SceneGraphAnswer())).parse("???")
    assert empty.objects == [] and empty.dropped == ["no drawable noun in '???'"]


def test_is_a_scene_parser():
    assert isinstance(TextHeadParser(ScriptedHead(ANSWER)), SceneParser)
