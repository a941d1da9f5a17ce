"""GenEval suites: its metadata rows, read, written, generated, and turned into scene graphs.

    >>> items = generate_suite(6, seed=0)
    >>> [item.tag for item in items]
    ['single_object', 'two_object', 'counting', 'colors', 'position', 'color_attr']
    >>> graph_from_item(items[2]).objects[0].count == items[2].include[0].count
    True

One row of GenEval's ``prompts/evaluation_metadata.jsonl`` (djghosh13/geneval):

    {"tag": "position", "include": [{"class": "teddy bear", "count": 1},
     {"class": "dog", "count": 1, "position": ["right of", 0]}],
     "prompt": "a photo of a dog right of a teddy bear"}

``position: [relation, i]`` says this object stands ``relation`` the ``include[i]``
object. Counting rows carry ``exclude: [{"class": c, "count": n + 1}]``: no more
than ``n``. The generator follows GenEval's ``create_prompts.py`` templates word
for word, its naive plurals included ("sandwichs", "sheeps"), and its category
proportions: the real file has 553 rows, 80 single_object, 99 two_object, 80
counting, 94 colors, 100 position, 100 color_attr.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from strokeagent.scene.graph import Predicate, Relation, SceneGraph, SceneObject
from strokeagent.scene.vocab import COCO_CLASSES, GENEVAL_COLORS, NUMBER_WORDS, geneval_plural

#: GenEval's six tags and how many rows each has in its real 553-row file.
GENEVAL_PROPORTIONS: dict[str, int] = {
    "single_object": 80,
    "two_object": 99,
    "counting": 80,
    "colors": 94,
    "position": 100,
    "color_attr": 100,
}
GENEVAL_TAGS: tuple[str, ...] = tuple(GENEVAL_PROPORTIONS)
GENEVAL_POSITIONS: tuple[Predicate, ...] = ("left of", "right of", "above", "below")
_CLASSES: tuple[str, ...] = tuple(COCO_CLASSES)
# GenEval never colours a person ("No [COLOR] person prompts" in create_prompts.py).
_COLORABLE: tuple[str, ...] = tuple(c for c in _CLASSES if c != "person")


class ObjectSpec(BaseModel):
    """One ``include``/``exclude`` entry: a class, a count, maybe a colour or a position.

    >>> ObjectSpec.model_validate({"class": "dog", "count": 1, "position": ["right of", 0]}).position
    ('right of', 0)
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    cls: str = Field(alias="class")
    count: int = Field(default=1, ge=0)
    color: str | None = None
    position: tuple[str, int] | None = None


class SuiteItem(BaseModel):
    """One GenEval metadata row. Unknown fields are kept and written back."""

    model_config = ConfigDict(extra="allow")

    tag: str
    include: list[ObjectSpec]
    exclude: list[ObjectSpec] | None = None
    prompt: str

    def to_json(self) -> str:
        """The row as GenEval writes it: ``json.dumps`` of the dict, key order kept."""
        return json.dumps(self.model_dump(by_alias=True, exclude_none=True))


def load_suite(path: str | Path) -> list[SuiteItem]:
    """Read a GenEval-format JSONL file; a bad row raises ``ValueError`` naming its line.

    Blank lines are skipped.
    """
    path = Path(path)
    items = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path}:{lineno}: not valid JSON ({e.msg}); each line must be one JSON object"
            ) from e
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        try:
            items.append(SuiteItem.model_validate(row))
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'row'}: {err['msg']}" for err in e.errors()
            )
            raise ValueError(f"{path}:{lineno}: not a GenEval row: {problems}") from e
    return items


def write_suite(items: Iterable[SuiteItem], path: str | Path) -> None:
    """Write ``items`` as GenEval JSONL, all at once (nothing half-written on failure)."""
    path = Path(path)
    text = "".join(item.to_json() + "\n" for item in items)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# -- generation ----------------------------------------------------------------------------------


def _with_article(word: str) -> str:
    # GenEval's rule: "an" before a vowel letter, whatever the sound.
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _item(tag: str, include: list[dict[str, Any]], prompt: str, **extra: Any) -> SuiteItem:
    return SuiteItem.model_validate({"tag": tag, "include": include, **extra, "prompt": prompt})


def _two_object(rng: random.Random) -> SuiteItem:
    a, b = rng.sample(_CLASSES, 2)
    return _item(
        "two_object",
        [{"class": a, "count": 1}, {"class": b, "count": 1}],
        f"a photo of {_with_article(a)} and {_with_article(b)}",
    )


def _counting(rng: random.Random) -> SuiteItem:
    cls, n = rng.choice(_CLASSES), rng.randint(2, 4)
    return _item(
        "counting",
        [{"class": cls, "count": n}],
        f"a photo of {NUMBER_WORDS[n]} {geneval_plural(cls)}",
        exclude=[{"class": cls, "count": n + 1}],
    )


def _colors(rng: random.Random) -> SuiteItem:
    cls, color = rng.choice(_COLORABLE), rng.choice(GENEVAL_COLORS)
    return _item(
        "colors", [{"class": cls, "count": 1, "color": color}], f"a photo of {_with_article(color)} {cls}"
    )


def _position(rng: random.Random) -> SuiteItem:
    a, b = rng.sample(_CLASSES, 2)
    relation = rng.choice(GENEVAL_POSITIONS)
    return _item(
        "position",
        [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [relation, 0]}],
        f"a photo of {_with_article(a)} {relation} {_with_article(b)}",
    )


def _color_attr(rng: random.Random) -> SuiteItem:
    a, b = rng.sample(_COLORABLE, 2)
    color_a, color_b = rng.sample(GENEVAL_COLORS, 2)
    return _item(
        "color_attr",
        [{"class": a, "count": 1, "color": color_a}, {"class": b, "count": 1, "color": color_b}],
        f"a photo of {_with_article(color_a)} {a} and {_with_article(color_b)} {b}",
    )


_GENERATORS = {
    "two_object": _two_object,
    "counting": _counting,
    "colors": _colors,
    "position": _position,
    "color_attr": _color_attr,
}


def _quotas(n: int, tags: Sequence[str]) -> dict[str, int]:
    """Split ``n`` over ``tags`` in GenEval's proportions (largest remainder, ties in tag order)."""
    total = sum(GENEVAL_PROPORTIONS[t] for t in tags)
    exact = {t: n * GENEVAL_PROPORTIONS[t] / total for t in tags}
    quotas = {t: int(exact[t]) for t in tags}
    by_remainder = sorted(tags, key=lambda t: (-(exact[t] - quotas[t]), tags.index(t)))
    for t in by_remainder[: n - sum(quotas.values())]:
        quotas[t] += 1
    return quotas


def generate_suite(n: int, seed: int, categories: Sequence[str] | None = None) -> list[SuiteItem]:
    """``n`` GenEval-style rows in GenEval's proportions, the same rows for the same seed.

    >>> from collections import Counter
    >>> Counter(item.tag for item in generate_suite(553, seed=43)) == Counter(GENEVAL_PROPORTIONS)
    True

    Rows come grouped by tag in GenEval's order; duplicates are avoided as GenEval
    does (it drops them), unless ``n`` is larger than a category's distinct prompts.
    ``categories`` restricts the tags (proportions renormalised among them).
    """
    if n < 0:
        raise ValueError(f"n must be at least 0, got {n}")
    tags = list(GENEVAL_TAGS if categories is None else dict.fromkeys(categories))
    unknown = [t for t in tags if t not in GENEVAL_PROPORTIONS]
    if unknown or not tags:
        raise ValueError(f"unknown GenEval categories {unknown}; choose from {', '.join(GENEVAL_TAGS)}")
    rng = random.Random(seed)
    items: list[SuiteItem] = []
    for tag, quota in _quotas(n, tags).items():
        if tag == "single_object":
            # Every class once before any class twice, as GenEval lists each class once.
            classes: list[str] = []
            while len(classes) < quota:
                classes += rng.sample(_CLASSES, len(_CLASSES))
            items += [
                _item("single_object", [{"class": c, "count": 1}], f"a photo of {_with_article(c)}")
                for c in classes[:quota]
            ]
            continue
        seen: set[str] = set()
        made = 0
        while made < quota:
            for _ in range(100):  # a fresh prompt, if one is left
                item = _GENERATORS[tag](rng)
                if item.to_json() not in seen:
                    break
            seen.add(item.to_json())
            items.append(item)
            made += 1
    return items


# -- scene graphs --------------------------------------------------------------------------------


def graph_from_item(item: SuiteItem) -> SceneGraph:
    """The scene graph a row asks for, with objects in the order its prompt mentions them.

    >>> row = SuiteItem.model_validate({"tag": "position", "prompt": "a photo of a dog right of a teddy bear",
    ...     "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}]})
    >>> g = graph_from_item(row)
    >>> [o.cls for o in g.objects], g.relations[0].model_dump()
    (['dog', 'teddy bear'], {'subject': 'o0', 'predicate': 'right of', 'object': 'o1'})

    GenEval lists a positioned object after its anchor but names it first in the
    prompt ("a dog right of a teddy bear"), so positioned entries come first here.
    Entries with count 0 and unknown positions are left out, noted in ``dropped``.
    """
    dropped = []
    for index, spec in enumerate(item.include):
        if spec.count == 0:
            dropped.append(f"include[{index}] asks for zero {spec.cls}; dropped")
    order = sorted(
        (i for i, spec in enumerate(item.include) if spec.count > 0),
        key=lambda i: item.include[i].position is None,
    )
    ids = {index: f"o{n}" for n, index in enumerate(order)}
    objects = []
    for index in order:
        spec = item.include[index]
        known = spec.cls in COCO_CLASSES
        objects.append(
            SceneObject(
                id=ids[index],
                noun=spec.cls if spec.count == 1 else geneval_plural(spec.cls),
                cls=spec.cls,
                supercategory=COCO_CLASSES[spec.cls] if known else "generic",
                count=spec.count,
                color=spec.color,
                known=known,
            )
        )
    relations = []
    for index in order:
        spec = item.include[index]
        if spec.position is None:
            continue
        predicate, anchor = spec.position
        if predicate not in GENEVAL_POSITIONS or anchor not in ids or anchor == index:
            dropped.append(f"include[{index}].position {list(spec.position)} dropped: not a usable relation")
            continue
        relations.append(Relation(subject=ids[index], predicate=predicate, object=ids[anchor]))  # type: ignore[arg-type]
    return SceneGraph(prompt=item.prompt, objects=objects, relations=relations, dropped=dropped)
