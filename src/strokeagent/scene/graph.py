"""Scene graphs: the objects a prompt asks for and how they relate.

    >>> g = SceneGraph(prompt="a red apple left of a cup",
    ...                objects=[SceneObject(id="o0", noun="apple", cls="apple", supercategory="food", color="red"),
    ...                         SceneObject(id="o1", noun="cup", cls="cup", supercategory="kitchen")],
    ...                relations=[Relation(subject="o0", predicate="left of", object="o1")])
    >>> g.object("o1").cls
    'cup'

The graph is a typed hand-off: planners give it (and increments of it) with their
``Plan``; drafters and reflectors read it back from the plan's ``handoffs``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from strokeagent.core.state import Handoff

Predicate = Literal[
    "left of",
    "right of",
    "above",
    "below",
    "on top of",
    "under",
    "next to",
    "near",
    "in front of",
    "behind",
]

#: GenEval's four position relations; the others are drawn but judged loosely.
GENEVAL_PREDICATES: tuple[Predicate, ...] = ("left of", "right of", "above", "below")


class SceneObject(BaseModel):
    """One kind of thing in the scene, ``count`` times."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    noun: str  # as written in the prompt ("apples")
    cls: str  # canonical singular class ("apple"): a COCO class name, or the unknown noun
    supercategory: str  # COCO supercategory ("food"), or "generic" for unknown nouns
    count: int = Field(default=1, ge=1)
    color: str | None = None  # one of strokeagent.scene.COLORS
    attributes: list[str] = Field(default_factory=list)  # other adjectives ("small", "wooden")
    known: bool = True  # False: a noun outside the class list, drawn as a labelled generic object


class Relation(BaseModel):
    """``subject predicate object``, by object id: "o0 left of o1"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str
    predicate: Predicate
    object: str


class SceneGraph(Handoff):
    """Everything the parser understood, and what it had to drop (with the reason).

    A typed hand-off (``"scene"``): the sketch planner gives it with each plan.
    """

    handoff = "scene"

    prompt: str
    objects: list[SceneObject] = Field(default_factory=list)
    relations: list[Relation] = Field(default_factory=list)
    background: str | None = None  # "beach", "kitchen": a scene phrase, drawn as a backdrop
    dropped: list[str] = Field(default_factory=list)  # "'a million' capped to 12", "'blue' contradicts 'red'"

    def object(self, object_id: str) -> SceneObject:
        for o in self.objects:
            if o.id == object_id:
                return o
        raise KeyError(object_id)

    @property
    def instance_count(self) -> int:
        return sum(o.count for o in self.objects)
