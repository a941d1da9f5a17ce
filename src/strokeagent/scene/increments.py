"""Scene graph → increments: the order in which a painter (and the paper's data) builds a scene.

    >>> from strokeagent.scene.parser import parse_prompt
    >>> for inc in plan_increments(parse_prompt("a photo of two red apples and a blue cup right of a dog")):
    ...     print(inc.kind, inc.object_ids, "|", inc.instruction, "|", inc.description)
    main ['o0'] | Draw two red apples. | Two red apples.
    main ['o2'] | Add a dog. | Two red apples and a dog.
    related ['o1'] | Add a blue cup to the right of the dog. | Two red apples, a dog and a blue cup to the right of the dog.

The order is the paper's (section on scene-graph increments):

1. ``layout``: the background, only when the graph has one.
2. ``main``: objects that are not the subject of any relation (free objects and
   relation anchors), one increment each, in mention order.
3. ``related``: subjects of relations, one each, each placed after its anchors
   (a cycle such as "a left of b, b right of a" is broken at the first mention).
4. ``attributes``: one increment for the non-colour attributes ("small",
   "wooden", "on the left") of every object that has some.

**Colour goes with the object**: an object is drawn in its colour the moment it
is added (the stroke canvas fills it then), so colour never gets an increment of
its own; ``attributes`` increments exist only for the other adjectives, and the
description names those only from that increment on.

With more increments than ``max_steps``, the two adjacent increments of the same
kind with the fewest objects are merged (earliest first), then any adjacent pair,
until the plan fits. Every object is added in exactly one increment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from strokeagent.core.state import Handoff
from strokeagent.scene.graph import Predicate, SceneGraph, SceneObject
from strokeagent.scene.vocab import NUMBER_WORDS, lookup_noun, pluralize

IncrementKind = Literal["layout", "main", "related", "attributes"]

_PREDICATE_WORDS: dict[Predicate, str] = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
    "on top of": "on top of",
    "under": "under",
    "next to": "next to",
    "near": "near",
    "in front of": "in front of",
    "behind": "behind",
}


class Increment(Handoff):
    """One planned step: what to do now (``<ins>``) and the whole scene after it (``<des>``).

    >>> Increment(instruction="Draw a bench.", description="A bench.", object_ids=["o0"], kind="main").kind
    'main'
    """

    handoff = "increment"

    instruction: str
    description: str
    object_ids: list[str] = Field(default_factory=list)  # objects whose instances are added now
    kind: IncrementKind
    attributes_of: list[str] = Field(default_factory=list)  # objects whose non-colour attributes are set now


def noun_phrase(obj: SceneObject, *, with_attributes: bool = False, definite: bool = False) -> str:
    """How an object is named in an instruction.

    >>> noun_phrase(SceneObject(id="o0", noun="apples", cls="apple", supercategory="food", count=2, color="red"))
    'two red apples'
    >>> noun_phrase(SceneObject(id="o0", noun="men", cls="person", supercategory="person", count=3), definite=True)
    'the men'
    """
    form = lookup_noun(obj.noun)
    singular = form.singular if form is not None and form.cls == obj.cls else obj.cls
    noun = singular if obj.count == 1 else pluralize(singular)
    if definite:
        return f"the {noun}"
    words = [a for a in obj.attributes if " " not in a] if with_attributes else []
    if obj.color:
        words.append(obj.color)
    words.append(noun)
    if obj.count == 1:
        article = "an" if words[0][0] in "aeiou" else "a"
    else:
        article = NUMBER_WORDS[obj.count] if obj.count < len(NUMBER_WORDS) else str(obj.count)
    placed = [a for a in obj.attributes if " " in a] if with_attributes else []  # "on the left"
    return " ".join([article, *words, *placed])


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


class _Describer:
    """Writes the running description of the scene: what is on the canvas so far."""

    def __init__(self, graph: SceneGraph) -> None:
        self.graph = graph

    def placement(self, obj: SceneObject, placed: set[str]) -> str:
        """ "to the right of the dog and above the cup": the object's relations to placed anchors."""
        parts = [
            f"{_PREDICATE_WORDS[r.predicate]} {noun_phrase(self.graph.object(r.object), definite=True)}"
            for r in self.graph.relations
            if r.subject == obj.id and r.object in placed
        ]
        return _join(parts) if parts else ""

    def describe(self, drawn: list[str], with_attributes: set[str]) -> str:
        parts = []
        placed: set[str] = set()
        for object_id in drawn:
            obj = self.graph.object(object_id)
            text = noun_phrase(obj, with_attributes=object_id in with_attributes)
            where = self.placement(obj, placed)
            parts.append(f"{text} {where}" if where else text)
            placed.add(object_id)
        text = _join(parts) if parts else ""
        if self.graph.background:
            backdrop = f"a {self.graph.background} backdrop"
            text = f"{text}, against {backdrop}" if text else backdrop
        return _sentence(text)


def _order(graph: SceneGraph) -> tuple[list[str], list[str]]:
    """``(main, related)`` object ids: anchors and free objects first, then subjects after their anchors."""
    subjects = {r.subject for r in graph.relations}
    main = [o.id for o in graph.objects if o.id not in subjects]
    remaining = [o.id for o in graph.objects if o.id in subjects]
    if not main and remaining:  # every object is someone's subject: a cycle, broken at the first
        main.append(remaining.pop(0))
    placed = set(main)
    related: list[str] = []
    while remaining:
        ready = next(
            (
                i
                for i in remaining
                if all(r.object in placed for r in graph.relations if r.subject == i and r.object != i)
            ),
            remaining[0],  # a cycle among the rest: place the first mentioned anyway
        )
        remaining.remove(ready)
        related.append(ready)
        placed.add(ready)
    return main, related


def plan_increments(graph: SceneGraph, max_steps: int = 5) -> list[Increment]:
    """Order ``graph`` into at most ``max_steps`` increments: layout, main, related, attributes.

    >>> from strokeagent.scene.parser import parse_prompt
    >>> [i.instruction for i in plan_increments(parse_prompt("a photo of a bench"))]
    ['Draw a bench.']

    A graph with no objects and no background gives no increments.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    describer = _Describer(graph)
    increments: list[Increment] = []
    drawn: list[str] = []
    placed: set[str] = set()

    if graph.background:
        increments.append(
            Increment(
                instruction=f"Lay out the background: {graph.background}.",
                description=describer.describe(drawn, set()),
                kind="layout",
            )
        )

    main, related = _order(graph)
    for kind, ids in (("main", main), ("related", related)):
        for object_id in ids:
            obj = graph.object(object_id)
            verb = "Add" if drawn else "Draw"
            where = describer.placement(obj, placed)
            instruction = f"{verb} {noun_phrase(obj)}" + (f" {where}" if where else "")
            drawn.append(object_id)
            placed.add(object_id)
            increments.append(
                Increment(
                    instruction=_sentence(instruction),
                    description=describer.describe(drawn, set()),
                    object_ids=[object_id],
                    kind=kind,  # type: ignore[arg-type]
                )
            )

    with_attributes = [o.id for o in graph.objects if o.attributes]
    if with_attributes:
        looks, places = [], []
        for object_id in with_attributes:
            obj = graph.object(object_id)
            the = noun_phrase(obj, definite=True)
            adjectives = [a for a in obj.attributes if " " not in a]
            where = [a for a in obj.attributes if " " in a]  # "on the left": a place, not a look
            if adjectives:
                looks.append(f"{the} {_join(adjectives)}")
            if where:
                places.append(f"{the} {_join(where)}")
        sentences = [_sentence(f"Make {_join(looks)}")] if looks else []
        sentences += [_sentence(f"Move {_join(places)}")] if places else []
        increments.append(
            Increment(
                instruction=" ".join(sentences),
                description=describer.describe(drawn, set(with_attributes)),
                kind="attributes",
                attributes_of=with_attributes,
            )
        )
    return _merge(increments, max_steps)


def _merge(increments: list[Increment], max_steps: int) -> list[Increment]:
    increments = list(increments)
    while len(increments) > max_steps:
        pairs = range(len(increments) - 1)
        same_kind = [i for i in pairs if increments[i].kind == increments[i + 1].kind]

        def size(i: int) -> int:
            return len(increments[i].object_ids) + len(increments[i + 1].object_ids)

        i = min(same_kind or pairs, key=lambda i: (size(i), i))
        a, b = increments[i], increments[i + 1]
        increments[i : i + 2] = [
            Increment(
                instruction=f"{a.instruction} {b.instruction}",
                description=b.description,
                object_ids=[*a.object_ids, *b.object_ids],
                kind=a.kind,
                attributes_of=[*a.attributes_of, *b.attributes_of],
            )
        ]
    return increments
