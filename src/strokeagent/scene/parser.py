"""Prompt → scene graph, by rules: GenEval's grammar and the free-form prompts around it.

    >>> g = parse_prompt("a photo of two red apples and a blue cup")
    >>> [(o.id, o.count, o.color, o.cls) for o in g.objects]
    [('o0', 2, 'red', 'apple'), ('o1', 1, 'blue', 'cup')]
    >>> g = parse_prompt("a photo of a dog right of a teddy bear")
    >>> g.relations[0].model_dump()
    {'subject': 'o0', 'predicate': 'right of', 'object': 'o1'}

How it reads a prompt, in order:

1. Lower-case it, set aside words outside the Latin alphabet (noted), and strip a
   framing prefix ("a photo of", "a watercolor painting of").
2. Lift scene phrases ("on a beach", "at night") into ``background``.
3. Cut what is left into noun phrases at connectors ("and", ",", "with"), at
   relation phrases ("right of", "on the top of", "hidden by", "between") and at
   verbs after a noun ("five ducks swam", "a child kicks a ball"). Contents and
   materials ("a cup of coffee", "made of glass") become attributes, not objects.
4. Read each noun phrase as ``count, modifiers, head noun``. The head is the
   longest known noun at the end of the phrase (so "hot dog" beats "dog"), else
   the last word, kept as an unknown class. Colour words beyond GenEval's map to
   the drawable colour of their family (``vocab.COLOR_FAMILIES``: "gold" yellow).
5. A relation links the noun phrase just before it (subject) to the one just
   after it (anchor): "a pen in front of a pen" is two pens, "the pen" the same
   one. "between X and Y" is two relations (right of X, left of Y); "it" is the
   object named before the subject ("a table with a vase on it"); "and behind a
   vase" keeps the subject before it.

Nothing raises on bad input: whatever cannot be used is left out and ``dropped``
says what and why, and so does a reading that is probably wrong ("'top' names a
part or a side", "'swam' looks like a verb", "'between' needs two objects").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from strokeagent.scene.graph import Predicate, Relation, SceneGraph, SceneObject
from strokeagent.scene.vocab import (
    COCO_CLASSES,
    COLOR_FAMILIES,
    COLORS,
    COUNT_WORDS,
    MAX_NOUN_WORDS,
    NOUN_COLORS,
    NOUNS,
    looks_plural,
    lookup_noun,
    singularize,
)

#: The most instances of one object the scene asks for; larger counts are capped.
MAX_COUNT = 12
#: The most object kinds in one scene; later ones are dropped.
MAX_OBJECTS = 8


@runtime_checkable
class SceneParser(Protocol):
    """Anything that turns a prompt into a scene graph (rules, a text head, a lookup table)."""

    def parse(self, prompt: str) -> SceneGraph: ...


# -- word tables --------------------------------------------------------------------------------

# "a watercolor painting of ..." : everything up to "<frame word> of" is framing, not scene.
_FRAME_WORDS = {
    "photo",
    "photograph",
    "picture",
    "image",
    "painting",
    "drawing",
    "sketch",
    "illustration",
    "render",
    "rendering",
    "scene",
    "view",
    "shot",
    "pic",
    "portrait",
    "snapshot",
}

# "between X and Y": two relations (right of X, left of Y); "between two X": next to them.
_BETWEEN = "between"
# Longest first, so "to the left of" wins over "left of". None: a spatial word with no
# drawable predicate ("in a box"): both objects stay, the relation is dropped with a note.
_RELATION_PHRASES: list[tuple[tuple[str, ...], Predicate | str | None]] = sorted(
    [
        *(
            ((*p, side, *s), f"{side} of")
            for side in ("left", "right")  # type: ignore[misc]
            for p in [("to", "the"), ("on", "the"), ("at", "the"), ()]
            for s in [("side", "of"), ("hand", "side", "of"), ("of",)]
        ),
        (("on", "top", "of"), "on top of"),
        (("on", "the", "top", "of"), "on top of"),
        (("at", "the", "top", "of"), "on top of"),
        (("on", "the", "edge", "of"), "on top of"),
        (("on", "top"), "on top of"),  # "a cake with a cherry on top": the anchor is the host
        (("on", "the", "bottom", "of"), "below"),
        (("at", "the", "bottom", "of"), "below"),
        (("at", "the", "base", "of"), "below"),
        (("at", "the", "foot", "of"), "below"),
        (("atop",), "on top of"),
        (("riding",), "on top of"),
        (("on",), "on top of"),
        (("onto",), "on top of"),
        (("upon",), "on top of"),
        (("above",), "above"),
        (("over",), "above"),
        (("below",), "below"),
        (("under",), "under"),
        (("underneath",), "under"),
        (("beneath",), "under"),
        (("next", "to"), "next to"),
        (("beside",), "next to"),
        (("besides",), "next to"),
        (("alongside",), "next to"),
        (("near",), "near"),
        (("near", "to"), "near"),
        (("close", "to"), "near"),
        (("nearby",), "near"),
        (("by",), "near"),
        (("in", "front", "of"), "in front of"),
        (("in", "the", "front", "of"), "in front of"),
        (("at", "the", "front", "of"), "in front of"),
        (("in", "front"), "in front of"),
        (("behind",), "behind"),
        (("in", "back", "of"), "behind"),
        (("at", "the", "back", "of"), "behind"),
        (("in", "the", "back", "of"), "behind"),
        # passive: the subject is the one hidden ("a girl hidden by a desk": the girl is behind)
        *(
            ((*adv, verb, prep), "behind")
            for verb in ("hidden", "covered", "obscured", "blocked", "concealed", "shielded", "screened")
            for prep in ("by", "behind")
            for adv in [(), ("partially",), ("partly",), ("half",), ("mostly",)]
        ),
        (("topped", "with"), "under"),
        (("topped", "by"), "under"),
        (("ridden", "by"), "under"),
        (("adjacent", "to"), "next to"),
        (("on", "the", "side", "of"), "next to"),
        (("at", "the", "side", "of"), "next to"),
        (("by", "the", "side", "of"), "next to"),
        (("leaning", "against"), "next to"),
        (("propped", "against"), "next to"),
        (("across", "from"), "near"),
        (("close", "by"), "near"),
        (("between",), _BETWEEN),
        (("in", "between"), _BETWEEN),
        (("flanked", "by"), _BETWEEN),
        (("surrounded", "by"), None),
        (("in",), None),
        (("inside",), None),
        (("inside", "of"), None),
        (("within",), None),
        (("into",), None),
        (("around",), None),
    ],
    key=lambda item: -len(item[0]),
)

# "a cat on the left": a place in the frame, kept as an attribute of the noun phrase before it.
_ABSOLUTE_PLACES: dict[tuple[str, ...], str] = {
    ("on", "the", "left"): "on the left",
    ("on", "the", "right"): "on the right",
    ("to", "the", "left"): "on the left",
    ("to", "the", "right"): "on the right",
    ("at", "the", "top"): "at the top",
    ("at", "the", "bottom"): "at the bottom",
    ("in", "the", "middle"): "in the middle",
    ("in", "the", "center"): "in the middle",
    ("in", "the", "centre"): "in the middle",
    ("in", "the", "foreground"): "in the foreground",
    ("in", "the", "background"): "in the background",
}

_CONNECTORS: list[tuple[str, ...]] = sorted(
    [
        (",",),
        ("and",),
        ("or",),
        ("with",),
        ("than",),
        ("plus",),
        ("of",),
        ("while",),
        ("but",),
        ("as", "well", "as"),
        ("along", "with"),
        ("together", "with"),
        ("holding",),
        ("wearing",),
        ("carrying",),
        ("having",),
        ("has",),
        ("have",),
        # prepositions with no place in a scene graph: "looks at", "throws a ball to a dog"
        ("at",),
        ("to",),
        ("from",),
        ("for",),
        ("toward",),
        ("towards",),
        ("about",),
        ("away",),
        ("out",),
        ("up",),
        ("down",),
        ("off",),
        ("then",),
    ],
    key=lambda c: -len(c),
)

# Verbs and glue that carry no drawable meaning in a scene description.
_FILLERS = {
    "is", "are", "was", "were", "be", "been", "being", "that", "which", "who", "there", "here",
    "sitting", "sits", "sit", "standing", "stands", "stand", "lying", "lies", "laying", "lays",
    "placed", "located", "positioned", "resting", "rests", "parked", "floating", "hanging",
    "flying", "perched", "set", "put", "very", "really", "quite", "also", "just", "some",
    "draw", "paint", "show", "generate", "create", "make", "me", "please",
    "his", "her", "its", "their", "our", "partially", "partly", "mostly", "completely", "fully",
    "slightly", "almost", "directly", "neatly", "carefully", "quietly", "happily", "peacefully",
    "slowly", "quickly", "gently", "proudly", "calmly", "together", "visible", "seen", "shown",
    "depicted", "featuring", "containing", "showing", "depicting",
}  # fmt: skip

# Verbs that end a noun phrase when a noun came before them ("five ducks swam", "a child kicks
# a ball"): forms that are never nouns after one. Base forms ("two girls play") only count after
# a plural noun, so "a wrist watch" keeps its watch.
_VERB_FORMS = {
    "swam", "swims", "swum", "ran", "runs", "sat", "stood", "flew", "flies", "lay", "slept",
    "sleeps", "ate", "eats", "eaten", "drank", "drinks", "bit", "bites", "threw", "throws",
    "thrown", "kicks", "walks", "plays", "reads", "looks", "watches", "jumps", "climbs", "hangs",
    "hung", "holds", "held", "carries", "chases", "rides", "rode", "barks", "waits", "sings",
    "sang", "dances", "smiles", "stares", "leans", "floats", "hides", "hid", "peeks", "grows",
    "grew", "faces", "talks", "cries", "laughs", "fights", "fought", "waves", "drives", "drove",
    "driven", "pulls", "pushes", "feeds", "fed", "hugs", "kisses", "touches", "catches", "caught",
    "swings", "swung", "writes", "wrote", "written", "cooks", "cuts", "grazes", "bought", "brought",
    "made", "makes", "gives", "gave", "given", "took", "takes", "taken", "sees", "seen",
    "wears", "wore", "worn", "goes", "went", "gone", "comes", "came", "fell", "falls", "fallen",
    "broke", "stolen", "stole", "chosen", "lies", "rests", "perches", "crosses", "glows",
    "shines", "shone", "blooms", "naps", "poses", "posing", "licks", "chews", "sniffs", "hunts",
    "graze", "hidden", "broken", "frozen", "bitten", "beaten", "forgotten", "spoken",
    "shaken", "woven", "sunken", "swollen", "ridden",
}  # fmt: skip
# "a man is painting a fence": after "is", an -ing noun is a verb.
_COPULAS = {"is", "are", "was", "were"}
_BASE_VERBS = {
    "play", "swim", "run", "sit", "walk", "eat", "drink", "watch", "read", "look", "jump", "fly",
    "sleep", "stand", "wait", "talk", "fight", "dance", "sing", "climb", "ride", "chase", "hold",
    "carry", "kick", "throw", "bite", "bark", "hug", "feed", "cross", "graze", "rest", "lie",
    "hang", "float", "hide", "peek", "stare", "smile", "laugh", "cry", "wave", "drive", "pull",
    "push", "cook", "cut", "wear", "swing", "nap", "pose", "hunt", "gather", "march", "race",
}  # fmt: skip
# "-ed" words that are adjectives even after a noun ("a cat with striped fur" is rare; "a dog,
# spotted" rarer): left out of the "-ed ends a noun phrase" rule.
_ED_ADJECTIVES = {"striped", "spotted", "colored", "coloured", "checkered", "dotted", "stuffed", "red"}
# "a cup of coffee", "a bowl of fruit": what follows "of" is the contents, not another object.
_CONTAINERS = {
    "cup", "mug", "glass", "bowl", "plate", "box", "bag", "basket", "bottle", "jar", "vase", "pot",
    "bucket", "can", "carton", "crate", "tray", "pitcher", "jug", "slice", "piece", "loaf", "bar",
    "sack", "barrel", "tub", "teapot", "kettle", "bouquet", "wine glass", "handbag", "suitcase",
    "backpack", "dish", "platter", "spoonful", "cupful", "handful", "pile", "heap", "stack",
}  # fmt: skip
# "made of glass", "made from wood": the material, kept as an attribute.
_MATERIAL_PHRASES = [("made", "out", "of"), ("made", "of"), ("made", "from"), ("crafted", "from"),
                     ("carved", "from"), ("carved", "out", "of"), ("built", "from"), ("built", "of")]  # fmt: skip
# Words that name a part of something or a place in the frame: as an object they are a misreading.
_PART_WORDS = {"top", "bottom", "front", "back", "side", "middle", "center", "centre", "edge", "corner",
               "end", "left", "right", "base", "foot", "rear", "inside", "outside"}  # fmt: skip
# Relations that may stand without their anchor when the host is already named:
# "a cake with a cherry on top", "a car with a man in front".
_ELLIPTIC = {"on top", "in front", "behind", "underneath", "beneath", "below", "above", "beside", "nearby",
             "close by", "alongside", "next to"}  # fmt: skip

# Adjectives that never head a noun phrase on their own ("a big and red cup").
_ADJECTIVES = {
    "small", "big", "large", "tiny", "huge", "little", "giant", "tall", "short", "long", "old",
    "new", "young", "wooden", "metal", "metallic", "plastic", "cute", "beautiful", "happy", "sad",
    "round", "square", "shiny", "bright", "dark", "light", "pale", "fluffy", "furry", "striped",
    "spotted", "empty", "full", "broken", "open", "closed", "wet", "dry", "hot", "cold", "vintage",
    "modern", "realistic", "cartoon", "colorful", "colourful", "single", "other", "another",
}  # fmt: skip
_SELF_WORDS = {"itself", "themselves", "oneself", "himself", "herself"}
# "a table with a vase on it": the object named before the subject.
_PRONOUNS = {"it", "them"}
_SELF_PHRASES = [("each", "other"), ("one", "another")]

# Nouns that name a place or a time rather than a thing: "on a beach", "at night".
_SCENES = {
    "beach", "kitchen", "park", "forest", "woods", "jungle", "desert", "street", "road", "city",
    "town", "village", "field", "meadow", "garden", "farm", "room", "living room", "bedroom",
    "bathroom", "office", "classroom", "restaurant", "cafe", "library", "ocean", "sea", "lake",
    "river", "pond", "mountain", "mountains", "hill", "hills", "snow", "rain", "grass", "sky",
    "space", "night", "sunset", "sunrise", "dawn", "dusk", "noon", "midnight", "daytime", "day",
    "morning", "evening", "winter", "summer", "autumn", "countryside", "airport", "station",
    "stadium", "studio", "background", "backyard", "yard", "playground", "snowfield", "harbor",
    "harbour", "shore", "coast", "island", "cave", "castle", "market", "supermarket", "store",
    "shop", "parking lot", "highway", "alley", "courtyard", "lawn", "savanna", "savannah",
    "zoo", "museum", "church", "school", "hospital", "house", "home", "fog", "mist", "storm",
    "underwater", "water", "moonlight", "sunlight", "dark", "daylight", "twilight",
}  # fmt: skip
_SCENE_PREPS = {"in", "on", "at", "by", "under", "during", "inside", "over", "underneath"}
# A scene phrase ends at one of these (or the end): "in a park next to ..." still ends at "park".
_ARTICLES = {"a", "an", "the"}
# Words that can never be the noun of a phrase, even as an unknown one.
_NOT_NOUNS = _ARTICLES | {
    "this",
    "that",
    "these",
    "those",
    "of",
    "and",
    "or",
    "with",
    "to",
    "for",
    "from",
    "my",
    "your",
    # subject pronouns: "I ate an apple" has no object called "i"
    "i",
    "we",
    "you",
    "he",
    "she",
    "they",
    "someone",
    "something",
}

_COUNT_PHRASES: list[tuple[tuple[str, ...], int]] = sorted(
    [
        (("a", "couple", "of"), 2),
        (("half", "a", "dozen"), 6),
        (("a", "half", "dozen"), 6),
        (("a", "trio", "of"), 3),
        (("a", "quartet", "of"), 4),
        (("a", "couple"), 2),
        (("a", "pair", "of"), 2),
        (("a", "few"), 3),
        (("a", "group", "of"), 3),
        (("a", "bunch", "of"), 3),
        (("a", "handful", "of"), 3),
        (("a", "lot", "of"), 5),
        *(
            (("a", w, "of"), 3)
            for w in (
                "herd",
                "flock",
                "pack",
                "crowd",
                "row",
                "stack",
                "pile",
                "set",
                "number",
                "series",
                "collection",
            )
        ),
        (("lots", "of"), 5),
        (("a", "dozen"), 12),
        (("a", "hundred"), 100),
        (("a", "thousand"), 1000),
        (("a", "million"), 1_000_000),
        (("a", "billion"), 1_000_000_000),
        (("a",), 1),
        (("an",), 1),
    ],
    key=lambda item: -len(item[0]),
)
#: Words after which "of" belongs to the count ("a pair of"), not a connector ("a cup of tea").
_GROUP_WORDS = {
    "couple", "pair", "pairs", "trio", "quartet", "group", "bunch", "handful", "lot", "lots", "dozen", "dozens", "hundreds",
    "thousands", "millions", "herd", "flock", "pack", "crowd", "row", "stack", "pile", "set",
    "number", "series", "collection", "few", "several", "many", "all",
}  # fmt: skip
# Function words of other languages: two or more of them mean the prompt is probably not English.
_FOREIGN_WORDS = {
    "un", "une", "le", "la", "les", "des", "du", "sur", "sous", "avec", "et", "el", "los", "las",
    "una", "unos", "con", "y", "der", "die", "das", "ein", "eine", "und", "mit", "auf", "il", "lo",
    "gli", "di", "su", "uno", "em", "um", "uma", "com", "het", "een", "en", "op", "ist", "est",
}  # fmt: skip
_MULTIPLIERS = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
# Classes that are themselves "a pair": "a pair of scissors" is one pair of scissors.
_PAIR_CLASSES = {"scissors", "skis"}


# -- reading a prompt ---------------------------------------------------------------------------


@dataclass
class _Phrase:
    """A noun phrase as read: how many, what modifies it, which noun heads it."""

    text: str
    count: int | None = None  # None: no count word (bare noun or "the")
    count_text: str = ""
    definite: bool = False
    colors: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    head: list[str] = field(default_factory=list)
    is_self: bool = False  # "itself", "each other"
    pronoun: bool = False  # "it", "them": the object named before


@dataclass
class _Rel:
    predicate: Predicate | str | None  # a Predicate, _BETWEEN, or None (not drawable)
    text: str


@dataclass
class _Place:
    attribute: str


@dataclass
class _Conn:
    """A connector: "and", ",", "with", a verb between two noun phrases, "of" after a container."""

    text: str
    kind: str = ""  # "verb": a verb ended the phrase; "content": what follows is contents/material


_Item = _Phrase | _Rel | _Place | _Conn


# Words in -ing that are nouns, not verbs ("a wedding", "a building").
_ING_NOUNS = {
    "building", "painting", "drawing", "ring", "king", "wing", "string", "ceiling", "clothing",
    "evening", "morning", "spring", "swing", "thing", "pudding", "wedding", "dumpling", "sibling",
    "duckling", "earring", "sling", "railing", "awning", "icing", "frosting", "stuffing", "sing",
}  # fmt: skip


_NOUN_FIRST_WORDS = {form.split()[0] for form in NOUNS if " " in form} | {
    s.split()[0] for s in _SCENES if " " in s
}


def _is_verb(word: str) -> bool:
    """A present participle ("riding", "chasing") that joins two noun phrases."""
    return (
        len(word) > 4
        and word.endswith("ing")
        and word not in _ING_NOUNS
        and word not in _NOUN_FIRST_WORDS  # "parking meter"
        and lookup_noun(word) is None
    )


def _looks_participle(word: str) -> bool:
    """A past participle used as a verb after a noun ("books stacked on a desk")."""
    return (
        len(word) > 4
        and word.endswith("ed")
        and not word.endswith("eed")
        and word not in _ED_ADJECTIVES
        and lookup_noun(word) is None
        and word not in COLOR_FAMILIES
    )


def _match(tokens: list[str], i: int, phrase: tuple[str, ...]) -> bool:
    return tuple(tokens[i : i + len(phrase)]) == phrase


class RuleParser:
    """The default parser: rules over GenEval's vocabulary, no model.

    >>> RuleParser().parse("three dragons on a beach").objects[0].model_dump()
    {'id': 'o0', 'noun': 'dragons', 'cls': 'dragon', 'supercategory': 'generic', 'count': 3, 'color': None, 'attributes': [], 'known': False}
    """

    def __init__(self, max_objects: int = MAX_OBJECTS, max_count: int = MAX_COUNT) -> None:
        self.max_objects = max_objects
        self.max_count = max_count

    def parse(self, prompt: str) -> SceneGraph:
        dropped: list[str] = []
        tokens = self._tokenize(prompt, dropped)
        tokens = self._strip_frame(tokens)
        tokens, background = self._lift_background(tokens)
        items = self._chunk(tokens)
        objects, relations = self._build(items, dropped)
        if not objects:
            dropped.append(f"no drawable noun in {prompt!r}")
        elif all(not o.known for o in objects):
            names = ", ".join(o.cls for o in objects)
            dropped.append(f"no known object class in {prompt!r}; drawn as generic objects: {names}")
        return SceneGraph(
            prompt=prompt, objects=objects, relations=relations, background=background, dropped=dropped
        )

    # 1. words ----------------------------------------------------------------------------------

    @staticmethod
    def _tokenize(prompt: str, dropped: list[str]) -> list[str]:
        text = prompt.lower().replace("&", " and ").replace("-", " ").replace("’", "'")
        text = re.sub(r"'s\b", "", text)
        foreign = [w for w in re.findall(r"[^\W\d_]+", text) if not w.isascii()]
        if foreign:
            dropped.append(f"non-English words ignored: {' '.join(foreign)}")
        tokens = ["," if word in ",.;:!?" else word for word in re.findall(r"[a-z0-9]+|[,.;:!?]", text)]
        foreign_function_words = [t for t in tokens if t in _FOREIGN_WORDS]
        if len(set(foreign_function_words)) >= 2:
            dropped.append(
                f"prompt looks non-English; ignored: {' '.join(dict.fromkeys(foreign_function_words))}"
            )
            tokens = [t for t in tokens if t not in _FOREIGN_WORDS]
        return tokens

    @staticmethod
    def _strip_frame(tokens: list[str]) -> list[str]:
        # "a high quality photo of", "an oil painting of": framing within the first few words.
        for i, tok in enumerate(tokens[:8]):
            if tok in _FRAME_WORDS and i + 1 < len(tokens) and tokens[i + 1] == "of":
                return tokens[i + 2 :]
        return tokens

    # 2. background -----------------------------------------------------------------------------

    @staticmethod
    def _lift_background(tokens: list[str]) -> tuple[list[str], str | None]:
        scenes: list[str] = []
        kept: list[str] = []
        i = 0
        while i < len(tokens):
            found = None
            if tokens[i] in _SCENE_PREPS or tokens[i] == "underwater":
                found = RuleParser._scene_at(tokens, i)
            if found is None:
                kept.append(tokens[i])
                i += 1
                continue
            end, scene = found
            if scene not in scenes:
                scenes.append(scene)
            i = end
        return kept, (", ".join(scenes) or None)

    @staticmethod
    def _scene_at(tokens: list[str], i: int) -> tuple[int, str] | None:
        """``(end, scene)`` when a scene phrase starts at ``i``: prep, article?, up to 2 modifiers, scene noun."""
        if tokens[i] == "underwater":
            return i + 1, "underwater"
        j = i + 1
        if j < len(tokens) and tokens[j] in _ARTICLES:
            j += 1
        for n_mods in range(3):
            for n_words in (2, 1):
                k = j + n_mods
                noun = " ".join(tokens[k : k + n_words])
                if len(tokens[k : k + n_words]) == n_words and noun in _SCENES:
                    # A scene noun that is also a known class ("table") is an object, not a scene.
                    mods = tokens[j:k]
                    if any(m in (",", "and") or lookup_noun(m) for m in mods):
                        return None
                    return k + n_words, " ".join([*mods, noun])
        return None

    # 3. chunks ---------------------------------------------------------------------------------

    @staticmethod
    def _chunk(tokens: list[str]) -> list[_Item]:
        items: list[_Item] = []
        buf: list[str] = []

        def flush() -> None:
            if buf:
                items.append(RuleParser._read_phrase(buf))
                buf.clear()

        i = 0
        while i < len(tokens):
            step = 0
            relation = next(((p, pred) for p, pred in _RELATION_PHRASES if _match(tokens, i, p)), None)
            place = next(((p, a) for p, a in _ABSOLUTE_PLACES.items() if _match(tokens, i, p)), None)
            material = next((p for p in _MATERIAL_PHRASES if _match(tokens, i, p)), None)
            # "on the left of a dog" is a relation; "a cat on the left" is a place in the frame.
            if material:
                flush()
                items.append(_Conn(" ".join(material), kind="content"))
                step = len(material)
            elif place and (relation is None or len(place[0]) >= len(relation[0])):
                flush()
                items.append(_Place(place[1]))
                step = len(place[0])
            elif relation:
                flush()
                items.append(_Rel(relation[1], " ".join(relation[0])))
                step = len(relation[0])
            if not step and tokens[i] == "of" and buf and buf[-1] in _GROUP_WORDS:
                buf.append("of")  # "a pair of", "a herd of": part of the count
                step = 1
            if not step and tokens[i] == "of" and RuleParser._is_container(buf):
                flush()  # "a cup of coffee": the coffee is in the cup, not beside it
                items.append(_Conn("of", kind="content"))
                step = 1
            if not step and tokens[i] in ("colored", "coloured") and buf and RuleParser._color(buf[-1]):
                step = 1  # "a cream colored sofa"
            if not step:
                for phrase in _CONNECTORS:
                    if _match(tokens, i, phrase):
                        flush()
                        items.append(_Conn(" ".join(phrase)))
                        step = len(phrase)
                        break
            if not step:
                for phrase in _SELF_PHRASES:
                    if _match(tokens, i, phrase):
                        buf.append("itself")
                        step = len(phrase)
                        break
            if not step and i + 1 < len(tokens) and tokens[i + 1] == "than":
                step = 1  # "taller than": a comparison, not a noun
            progressive = tokens[i] in _ING_NOUNS and i > 0 and tokens[i - 1] in _COPULAS
            if not step and (
                _is_verb(tokens[i])
                or RuleParser._is_finite_verb(tokens[i], buf)
                or (progressive and RuleParser._head_of(buf) is not None)
            ):
                flush()  # "a man riding a horse", "five ducks swam": the verb ends the noun phrase
                items.append(_Conn(tokens[i], kind="verb"))
                step = 1
            if not step:
                if tokens[i] not in _FILLERS:
                    buf.append(tokens[i])
                step = 1
            i += step
        flush()
        return items

    @staticmethod
    def _head_of(buf: list[str]) -> tuple[str, bool] | None:
        """The head noun the words so far would have, and whether it is plural; None if none yet."""
        if not buf:
            return None
        phrase = RuleParser._read_phrase(list(buf))
        if not phrase.head:
            return None
        noun = " ".join(phrase.head)
        form = lookup_noun(noun)
        return (form.singular, form.plural) if form else (phrase.head[-1], looks_plural(phrase.head[-1]))

    @staticmethod
    def _is_finite_verb(word: str, buf: list[str]) -> bool:
        """A verb after a noun: "swam" in "five ducks swam", "play" in "two girls play"."""
        if word not in _VERB_FORMS and word not in _BASE_VERBS and not _looks_participle(word):
            return False
        if word in _NOUN_FIRST_WORDS:  # "an orange potted plant"
            return False
        head = RuleParser._head_of(buf)
        if head is None:
            return False
        if word in _VERB_FORMS or _looks_participle(word):
            return True
        return head[1]  # a base form only after a plural: "two girls play", not "a wrist watch"

    @staticmethod
    def _is_container(buf: list[str]) -> bool:
        head = RuleParser._head_of(buf)
        return head is not None and (head[0] in _CONTAINERS or singularize(head[0]) in _CONTAINERS)

    # 4. one noun phrase ------------------------------------------------------------------------

    @staticmethod
    def _read_phrase(words: list[str]) -> _Phrase:
        phrase = _Phrase(text=" ".join(words))
        if any(w in _SELF_WORDS for w in words):
            phrase.is_self = True
            return phrase
        if words and words[-1] in _PRONOUNS:
            phrase.pronoun = True  # "on it": resolved against the objects named before
            return phrase
        words = [w for w in words if w not in _PRONOUNS]  # "it is a cat"
        i = RuleParser._read_count(words, phrase)
        rest = words[i:]
        # The head: the longest known noun at the end; else, with trailing colours and
        # participles set aside ("a cup painted red"), the longest known noun or the last word.
        head_len = RuleParser._known_suffix(rest)
        post: list[str] = []
        if not head_len:
            while rest and (
                RuleParser._color(rest[-1])
                or (rest[-1].endswith(("ing", "ed", "ly")) and rest[-1] not in _ING_NOUNS)
            ):
                post.insert(0, rest.pop())
            head_len = RuleParser._known_suffix(rest) or (1 if rest else 0)
            if not rest:  # nothing but modifiers: "a red" ; the last one may still be a noun ("a rose")
                rest, post = post, []
                head_len = 1 if rest and (not RuleParser._color(rest[-1]) or rest[-1] in NOUN_COLORS) else 0
            elif head_len == 1 and rest[-1] in _ADJECTIVES and post and post[-1] in NOUN_COLORS:
                rest, post = rest + post, []  # "a single rose": the colour word is the noun
        if head_len == 1 and (rest[-1] in _ADJECTIVES or rest[-1] in COUNT_WORDS or rest[-1] in _NOT_NOUNS):
            # "a big red", "the the": no noun yet
            head_len = 0
        phrase.head = rest[len(rest) - head_len :] if head_len else []
        for word in rest[: len(rest) - head_len] + post:
            color = RuleParser._color(word)
            if color:
                phrase.colors.append(color)
            elif word in COUNT_WORDS or word.isdigit() or word in _ARTICLES:
                continue
            elif not word.endswith(("ing", "ed")) and word not in phrase.attributes:
                phrase.attributes.append(word)
        return phrase

    @staticmethod
    def _read_count(words: list[str], phrase: _Phrase) -> int:
        """Read a leading count into ``phrase``; return the index after it."""
        if words and words[0] == "the":
            phrase.definite = True
            return 1
        if words and words[0] == "another":
            phrase.count, phrase.count_text = 1, "another"
            return 1
        for count_phrase, value in _COUNT_PHRASES:
            if _match(words, 0, count_phrase):
                i = len(count_phrase)
                phrase.count, phrase.count_text = value, " ".join(count_phrase)
                break
        else:
            if not words:
                return 0
            first = words[0]
            if first.isdigit():
                phrase.count = int(first[:10])
            elif first in COUNT_WORDS and first != "some":
                phrase.count = COUNT_WORDS[first]
            else:
                return 0
            phrase.count_text, i = first, 1
        # "one hundred", "two million"
        while i < len(words) and words[i] in _MULTIPLIERS and phrase.count is not None:
            phrase.count *= _MULTIPLIERS[words[i]]
            phrase.count_text += " " + words[i]
            i += 1
        # "two pairs of socks": four socks
        if i < len(words) and words[i] in ("pair", "pairs") and phrase.count is not None:
            phrase.count *= 2
            phrase.count_text += " " + words[i]
            i += 1
        if i < len(words) and words[i] == "of":
            i += 1
        return i

    @staticmethod
    def _known_suffix(words: list[str]) -> int:
        for n in range(min(MAX_NOUN_WORDS, len(words)), 0, -1):
            if lookup_noun(" ".join(words[len(words) - n :])):
                return n
        return 0

    @staticmethod
    def _color(word: str) -> str | None:
        word = COLOR_FAMILIES.get(word, word)
        return word if word in COLORS else None

    # 5. objects and relations ------------------------------------------------------------------

    def _build(self, items: list[_Item], dropped: list[str]) -> tuple[list[SceneObject], list[Relation]]:
        objects: list[SceneObject] = []
        relations: list[Relation] = []
        carry: list[_Phrase] = []  # head-less modifiers waiting for their noun: "a red and blue cup"
        previous: str | None = None  # id of the noun phrase just read (a relation's subject)
        pending: _Rel | None = None
        pending_subject: str | None = None  # "a cup in front of a laptop and behind a vase": the cup
        between: tuple[str, str, _Rel] | None = None  # (subject, first anchor): waiting for "and Y"
        last_rel_subject: str | None = None
        last_was_anchor = False  # the phrase just read was a relation's anchor
        conn: _Conn | None = None  # the connector right before this item
        content_of: str | None = None  # "a cup of coffee": the next phrase is what the cup holds

        def relate(subject: str, predicate: Predicate, anchor: str) -> None:
            relation = Relation(subject=subject, predicate=predicate, object=anchor)
            if subject != anchor and relation not in relations:
                relations.append(relation)

        def finish_between() -> None:
            nonlocal between
            if between is not None:
                subject, first, rel = between
                between = None
                dropped.append(
                    f"'{rel.text}' needs two objects (between X and Y); placed next to the one given"
                )
                relate(subject, "next to", first)

        def finish_dangling() -> None:
            """A relation with no anchor after it: "a cake with a cherry on top" anchors on the host."""
            nonlocal pending
            if pending is None:
                return
            rel, pending = pending, None
            subject = pending_subject or previous
            host = self._antecedent(objects, subject)
            if rel.text in _ELLIPTIC and subject is not None and host is not None:
                relate(subject, rel.predicate, host)  # type: ignore[arg-type]
            else:
                dropped.append(f"relation '{rel.text}' has no object after it")

        for item in [*items, _Conn("", kind="end")]:
            if isinstance(item, _Rel):
                finish_dangling()
                finish_between()
                pending = item
                pending_subject = last_rel_subject if conn is not None and last_was_anchor else None
                conn = None
                continue
            if isinstance(item, _Place):
                if previous is not None:
                    self._update(objects, previous, attribute=item.attribute)
                continue
            if isinstance(item, _Conn):
                if pending is not None and (item.kind == "end" or pending.text in _ELLIPTIC):
                    finish_dangling()
                if item.text != "and":
                    finish_between()
                if item.kind == "content" and previous is not None:
                    content_of = previous
                conn = item
                continue
            phrase = item
            before, conn = conn, None
            if content_of is not None and pending is None:
                # "a cup of coffee", "a vase made of glass": an attribute of the cup, not an object
                if before is not None:
                    self._update(objects, content_of, attribute=f"{before.text} {phrase.text}")
                content_of = None
                continue
            content_of = None
            if not phrase.head and not phrase.is_self and not phrase.pronoun:
                if before is not None and before.kind == "verb" and previous is not None and phrase.colors:
                    self._recolor(objects, previous, phrase, dropped)  # "a car painted blue"
                elif phrase.colors or phrase.attributes or phrase.count is not None:
                    carry.append(phrase)
                continue
            for earlier in carry:  # "a red and blue cup": fold the head-less phrases in
                phrase.colors[:0] = earlier.colors
                phrase.attributes[:0] = earlier.attributes
                if phrase.count is None and not phrase.definite:
                    phrase.count, phrase.count_text = earlier.count, earlier.count_text
            carry = []

            if (phrase.is_self or phrase.pronoun) and pending is None:
                dropped.append(f"{phrase.text!r} refers to nothing before it; dropped")
                continue
            if between is not None and pending is None and before is not None and before.text == "and":
                subject, first, rel = between  # "a clock between a vase and a lamp"
                between = None
                second = self._add_object(phrase, objects, dropped)
                if second is None or second in (subject, first):
                    dropped.append(f"'{rel.text}' needs two different objects; placed next to the one given")
                    relate(subject, "next to", first)
                else:
                    relate(subject, "right of", first)
                    relate(subject, "left of", second)
                    previous = second
                last_rel_subject, last_was_anchor = subject, True
                continue
            finish_between()
            if pending is not None:
                rel, pending = pending, None
                subject = pending_subject or previous
                anchor = self._relate(subject, rel, phrase, objects, relations, dropped)
                if (
                    rel.predicate == _BETWEEN
                    and anchor is not None
                    and subject is not None
                    and anchor != subject
                ):
                    if self._object(objects, anchor).count > 1:
                        relate(subject, "next to", anchor)  # "a cup between two plates"
                    else:
                        between = (subject, anchor, rel)
                if anchor is not None:
                    previous = anchor
                last_rel_subject, last_was_anchor = subject, True
                continue
            object_id = self._add_object(phrase, objects, dropped)
            if object_id is not None:
                previous = object_id
            last_was_anchor = False

        for phrase in carry:
            dropped.append(f"{phrase.text!r} has no noun; dropped")
        return objects, relations

    @staticmethod
    def _object(objects: list[SceneObject], object_id: str) -> SceneObject:
        return next(o for o in objects if o.id == object_id)

    @staticmethod
    def _update(objects: list[SceneObject], object_id: str, attribute: str) -> None:
        for n, o in enumerate(objects):
            if o.id == object_id and attribute not in o.attributes:
                objects[n] = o.model_copy(update={"attributes": [*o.attributes, attribute]})

    @staticmethod
    def _recolor(objects: list[SceneObject], object_id: str, phrase: _Phrase, dropped: list[str]) -> None:
        """A colour after a verb belongs to the noun before it: "a car painted blue"."""
        for n, o in enumerate(objects):
            if o.id != object_id:
                continue
            if o.color is None:
                objects[n] = o.model_copy(update={"color": phrase.colors[0]})
            elif o.color != phrase.colors[0]:
                dropped.append(f"'{phrase.colors[0]}' contradicts '{o.color}' for {o.cls}; kept '{o.color}'")

    @staticmethod
    def _antecedent(objects: list[SceneObject], subject: str | None) -> str | None:
        """What "it" names: the latest object other than the subject."""
        return next((o.id for o in reversed(objects) if o.id != subject), None)

    def _relate(
        self,
        subject: str | None,
        rel: _Rel,
        anchor_phrase: _Phrase,
        objects: list[SceneObject],
        relations: list[Relation],
        dropped: list[str],
    ) -> str | None:
        """Add the anchor (unless it is the subject again) and the relation; return the anchor's id."""
        if anchor_phrase.is_self:
            dropped.append(f"self-relation '{rel.text} {anchor_phrase.text}' dropped")
            return subject
        if anchor_phrase.pronoun:
            anchor = self._antecedent(objects, subject)
            if anchor is None:
                dropped.append(
                    f"'{rel.text} {anchor_phrase.text}': '{anchor_phrase.text}' names nothing; dropped"
                )
                return subject
        else:
            anchor = self._add_object(anchor_phrase, objects, dropped)
        if subject is None:
            dropped.append(f"relation '{rel.text}' has no subject before it")
        elif anchor is None:
            dropped.append(f"relation '{rel.text} {anchor_phrase.text}' dropped: its object was dropped")
        elif anchor == subject:
            cls = self._object(objects, subject).cls
            dropped.append(
                f"self-relation dropped: '{rel.text} {anchor_phrase.text}' places the {cls} relative to itself"
            )
        elif rel.predicate is None:
            dropped.append(
                f"'{rel.text}' is not a relation the canvas can draw; kept both objects, dropped the relation"
            )
        elif rel.predicate != _BETWEEN:
            relation = Relation(subject=subject, predicate=rel.predicate, object=anchor)  # type: ignore[arg-type]
            if relation not in relations:
                relations.append(relation)
        return anchor

    @staticmethod
    def _doubt(phrase: _Phrase, word: str, dropped: list[str]) -> None:
        """Say when an unknown head noun is probably a misreading: a verb, a part, a noun as modifier."""
        if word in _PART_WORDS:
            dropped.append(
                f"{phrase.text!r}: '{word}' names a part or a side, not a thing; drawn as an object"
            )
            return
        if word in _VERB_FORMS or _looks_participle(word):
            dropped.append(f"{phrase.text!r}: '{word}' looks like a verb, not a thing; drawn as an object")
            return
        for attribute in phrase.attributes:
            if lookup_noun(attribute):
                dropped.append(
                    f"{phrase.text!r}: read '{word}' as the object and '{attribute}' as a modifier of it"
                )

    def _add_object(self, phrase: _Phrase, objects: list[SceneObject], dropped: list[str]) -> str | None:
        """The id of the object the phrase names: a new one, or an earlier one for "the X"."""
        noun = " ".join(phrase.head)
        form = lookup_noun(noun)
        if form is not None:
            cls, plural, known = form.cls, form.plural, True
        else:
            word = phrase.head[-1]
            if not re.search(r"[aeiouy]", word) or len(word) > 20 or word.isdigit():
                dropped.append(f"{phrase.text!r}: {word!r} is not a word; dropped")
                return None
            cls, plural, known = singularize(word), looks_plural(word), False
            noun = word
            self._doubt(phrase, word, dropped)
        if phrase.definite:
            for o in reversed(objects):
                if o.cls == cls:
                    return o.id

        count = phrase.count
        if count is None:
            count = 2 if plural else 1  # a bare plural ("apples") asks for more than one
        if cls in _PAIR_CLASSES and phrase.count_text.startswith(("a pair", "pair")):
            count = 1
        if count == 0:
            dropped.append(f"{phrase.text!r} asks for none; dropped")
            return None
        if count > self.max_count:
            dropped.append(f"{phrase.count_text!r} {noun} capped to {self.max_count}")
            count = self.max_count
        if len(objects) >= self.max_objects:
            dropped.append(f"more than {self.max_objects} kinds of object; dropped {phrase.text!r}")
            return None

        color = phrase.colors[0] if phrase.colors else None
        for extra in dict.fromkeys(phrase.colors[1:]):
            if extra != color:
                dropped.append(f"'{extra}' contradicts '{color}' for {cls}; kept '{color}'")
        object_id = f"o{len(objects)}"
        objects.append(
            SceneObject(
                id=object_id,
                noun=noun,
                cls=cls,
                supercategory=COCO_CLASSES[cls] if known else "generic",
                count=count,
                color=color,
                attributes=phrase.attributes,
                known=known,
            )
        )
        return object_id


_DEFAULT = RuleParser()


def parse_prompt(prompt: str, parser: SceneParser | None = None) -> SceneGraph:
    """Parse ``prompt`` with ``parser`` (the rule parser by default).

    >>> parse_prompt("a photo of four giraffes").objects[0].count
    4
    """
    return (parser or _DEFAULT).parse(prompt)
