"""Prompt → scene graph by asking a text head, then checking its answer.

    >>> # graph = await TextHeadParser(head).aparse("a cat sleeping on a sofa under a window")

The head answers in ``SceneGraphAnswer``, a small schema with bounded lists that
servers can enforce while decoding (JSON-schema-constrained generation). The
answer is then repaired into a ``SceneGraph`` the same way the rule parser's
output looks: nouns mapped to GenEval classes, ids renumbered "o0", "o1", ...,
counts capped, and anything unusable (unknown colours, relations to ids that do
not exist, self-relations) left out with a note in ``dropped``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

from pydantic import BaseModel, Field

from strokeagent.scene.graph import Predicate, Relation, SceneGraph, SceneObject
from strokeagent.scene.parser import MAX_COUNT, MAX_OBJECTS, RuleParser, SceneParser
from strokeagent.scene.vocab import COCO_CLASSES, COLOR_ALIASES, COLORS, lookup_noun, singularize

if TYPE_CHECKING:
    from strokeagent.backends.heads import TextHead

MAX_RELATIONS = 8


class ObjectAnswer(BaseModel):
    id: str = Field(max_length=16, description='a short id such as "o0"')
    noun: str = Field(max_length=40, description="the noun as in the prompt, e.g. 'apples'")
    count: int = Field(default=1, ge=0, le=1000)
    color: str | None = Field(default=None, max_length=16, description="one of: " + ", ".join(COLORS))
    attributes: list[str] = Field(default_factory=list, max_length=6)


class RelationAnswer(BaseModel):
    subject: str = Field(max_length=16)
    predicate: Predicate
    object: str = Field(max_length=16)


class SceneGraphAnswer(BaseModel):
    """What the head is asked to fill in."""

    objects: list[ObjectAnswer] = Field(default_factory=list, max_length=MAX_OBJECTS)
    relations: list[RelationAnswer] = Field(default_factory=list, max_length=MAX_RELATIONS)
    background: str | None = Field(default=None, max_length=60)


_SYSTEM = (
    "You turn an image prompt into a scene graph. List every kind of object the prompt asks for "
    f"(at most {MAX_OBJECTS}), with how many, its colour (one of: {', '.join(COLORS)}; or null) and "
    "other adjectives. Give relations between object ids using only these predicates: "
    f"{', '.join(get_args(Predicate))}. Put a place or time ('beach', 'night') in background, not in "
    "objects. Answer only with the JSON object."
)


class TextHeadParser:
    """A ``SceneParser`` backed by any ``TextHead``; falls back to rules if the head fails.

    >>> isinstance(TextHeadParser(head=None), SceneParser)
    True
    """

    def __init__(self, head: TextHead | None, fallback: SceneParser | None = None) -> None:
        self.head = head
        self.fallback = fallback if fallback is not None else RuleParser()

    async def aparse(self, prompt: str) -> SceneGraph:
        messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": prompt}]
        try:
            if self.head is None:
                raise RuntimeError("no text head configured")
            answer = await self.head.chat(messages, schema=SceneGraphAnswer)
            if not isinstance(answer, SceneGraphAnswer):
                answer = SceneGraphAnswer.model_validate(answer.model_dump())
        except Exception as e:  # any head failure means: use the rules, and say so
            graph = self.fallback.parse(prompt)
            note = f"text head failed ({type(e).__name__}: {e}); parsed by rules instead"
            return graph.model_copy(update={"dropped": [note, *graph.dropped]})
        return repair(prompt, answer)

    def parse(self, prompt: str) -> SceneGraph:
        """Sync wrapper for scripts; inside a running event loop, ``await aparse`` instead."""
        import asyncio  # here, not at the top: importing the scene package stays cheap

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.aparse(prompt))
        raise RuntimeError(
            "TextHeadParser.parse called inside a running event loop; use 'await aparse(prompt)'"
        )


def repair(prompt: str, answer: SceneGraphAnswer) -> SceneGraph:
    """Check a head's answer and make it a valid ``SceneGraph``; every change is noted in ``dropped``.

    >>> a = SceneGraphAnswer(objects=[ObjectAnswer(id="cat", noun="cats", count=50, color="teal")],
    ...                      relations=[RelationAnswer(subject="cat", predicate="near", object="dog")])
    >>> g = repair("cats", a)
    >>> g.objects[0].count, g.objects[0].color, g.relations
    (12, None, [])
    >>> g.dropped
    ["'teal' is not a known colour; cats kept without colour", '50 cats capped to 12', "relation 'cat near dog': unknown id 'dog'; dropped"]
    """
    dropped: list[str] = []
    objects: list[SceneObject] = []
    ids: dict[str, str] = {}
    for item in answer.objects[:MAX_OBJECTS]:
        noun = " ".join(item.noun.lower().split())
        if item.id in ids:
            dropped.append(f"object id {item.id!r} used twice; kept the first")
            continue
        if not noun:
            dropped.append(f"object {item.id!r} has no noun; dropped")
            continue
        if item.count == 0:
            dropped.append(f"{noun!r} asks for none; dropped")
            continue
        form = lookup_noun(noun)
        cls = form.cls if form else singularize(noun.split()[-1])
        color = None
        if item.color:
            name = COLOR_ALIASES.get(item.color.lower(), item.color.lower())
            if name in COLORS:
                color = name
            else:
                dropped.append(f"{item.color!r} is not a known colour; {noun} kept without colour")
        count = item.count
        if count > MAX_COUNT:
            dropped.append(f"{count} {noun} capped to {MAX_COUNT}")
            count = MAX_COUNT
        ids[item.id] = f"o{len(objects)}"
        objects.append(
            SceneObject(
                id=ids[item.id],
                noun=noun,
                cls=cls,
                supercategory=COCO_CLASSES[cls] if form else "generic",
                count=count,
                color=color,
                attributes=list(dict.fromkeys(a.lower() for a in item.attributes if a.strip())),
                known=form is not None,
            )
        )
    relations: list[Relation] = []
    for r in answer.relations[:MAX_RELATIONS]:
        text = f"{r.subject} {r.predicate} {r.object}"
        missing = [i for i in (r.subject, r.object) if i not in ids]
        if missing:
            dropped.append(f"relation {text!r}: unknown id {missing[0]!r}; dropped")
        elif r.subject == r.object:
            dropped.append(f"self-relation {text!r} dropped")
        else:
            relation = Relation(subject=ids[r.subject], predicate=r.predicate, object=ids[r.object])
            if relation not in relations:
                relations.append(relation)
    if not objects:
        dropped.append(f"no drawable noun in {prompt!r}")
    background = (answer.background or "").strip().lower() or None
    return SceneGraph(
        prompt=prompt, objects=objects, relations=relations, background=background, dropped=dropped
    )
