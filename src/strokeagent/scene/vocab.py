"""The words the rule parser knows: GenEval's 80 COCO classes, colours and counts.

    >>> COCO_CLASSES["teddy bear"]
    'indoor'
    >>> lookup_noun("knives")
    NounForm(cls='knife', singular='knife', plural=True)
    >>> lookup_noun("sofa").cls
    'couch'
    >>> COLORS["brown"]
    (139, 69, 19)

Class names are spelled as GenEval spells them (``prompts/object_names.txt`` in
djghosh13/geneval), in the same order, because GenEval's metadata names classes
that way and its detector is keyed by them. GenEval builds plurals naively
("sandwichs", "sheeps", "knifes", "persons"), so those forms are accepted next to
the proper English ones.
"""

from __future__ import annotations

from typing import NamedTuple

#: GenEval's 80 classes (its order), each with its COCO supercategory.
COCO_CLASSES: dict[str, str] = {
    "person": "person",
    **dict.fromkeys(["bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat"], "vehicle"),
    **dict.fromkeys(["traffic light", "fire hydrant", "stop sign", "parking meter", "bench"], "outdoor"),
    **dict.fromkeys(
        ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"], "animal"
    ),
    **dict.fromkeys(["backpack", "umbrella", "handbag", "tie", "suitcase"], "accessory"),
    **dict.fromkeys(
        [
            "frisbee",
            "skis",
            "snowboard",
            "sports ball",
            "kite",
            "baseball bat",
            "baseball glove",
            "skateboard",
            "surfboard",
            "tennis racket",
        ],
        "sports",
    ),
    **dict.fromkeys(["bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl"], "kitchen"),
    **dict.fromkeys(
        ["banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake"],
        "food",
    ),
    **dict.fromkeys(["chair", "couch", "potted plant", "bed", "dining table", "toilet"], "furniture"),
    **dict.fromkeys(
        ["tv", "laptop", "computer mouse", "tv remote", "computer keyboard", "cell phone"], "electronic"
    ),
    **dict.fromkeys(["microwave", "oven", "toaster", "sink", "refrigerator"], "appliance"),
    **dict.fromkeys(
        ["book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"], "indoor"
    ),
}

#: GenEval's ten colours, then gray. The stroke canvas fills with these and
#: measures them back from pixels, so they are kept far apart in RGB.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "orange": (255, 140, 0),
    "yellow": (255, 225, 0),
    "green": (30, 160, 40),
    "blue": (20, 60, 220),
    "purple": (128, 0, 128),
    "pink": (255, 105, 180),
    "brown": (139, 69, 19),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
}
GENEVAL_COLORS: tuple[str, ...] = tuple(list(COLORS)[:10])
#: Other spellings of a colour, mapped to its COLORS name.
COLOR_ALIASES: dict[str, str] = {"grey": "gray", "violet": "purple", "crimson": "red", "scarlet": "red"}
#: Colour words people write beyond GenEval's, each mapped to the drawable colour of its
#: family (the canvas paints and measures only COLORS). Shades that fall between two
#: families go to the one people name them after: teal and turquoise are "blue", beige and
#: tan "brown", gold "yellow", silver "gray". The rule parser reads these; ``COLOR_ALIASES``
#: (what a text head may answer) stays the short list.
COLOR_FAMILIES: dict[str, str] = {
    **COLOR_ALIASES,
    **dict.fromkeys(["maroon", "burgundy", "ruby", "cherry", "vermilion", "vermillion", "cardinal"], "red"),
    **dict.fromkeys(["peach", "coral", "tangerine", "apricot", "copper", "amber", "ginger"], "orange"),
    **dict.fromkeys(["gold", "golden", "mustard", "lemon", "blond", "blonde", "canary"], "yellow"),
    **dict.fromkeys(["lime", "olive", "emerald", "jade", "mint", "sage", "chartreuse"], "green"),
    **dict.fromkeys(
        ["navy", "azure", "cobalt", "sapphire", "turquoise", "teal", "cyan", "aqua", "cerulean", "denim"],
        "blue",
    ),
    **dict.fromkeys(["lavender", "lilac", "mauve", "plum", "indigo", "amethyst", "purplish"], "purple"),
    **dict.fromkeys(["magenta", "fuchsia", "rose", "salmon", "pinkish"], "pink"),
    **dict.fromkeys(
        ["beige", "tan", "khaki", "chocolate", "bronze", "caramel", "chestnut", "rust", "brownish"], "brown"
    ),
    **dict.fromkeys(["ebony", "blackish"], "black"),
    **dict.fromkeys(["ivory", "cream", "pearl", "snowy", "whitish"], "white"),
    **dict.fromkeys(["silver", "silvery", "charcoal", "slate", "ash", "grayish", "greyish"], "gray"),
    **{"reddish": "red", "orangish": "orange", "yellowish": "yellow", "greenish": "green", "bluish": "blue"},
}
#: Colour words that are also things ("a rose", "a lime", "gold"): a noun when nothing else
#: in the phrase can be, a colour otherwise ("a rose vase").
NOUN_COLORS: frozenset[str] = frozenset(
    {
        "orange", "cherry", "ruby", "peach", "coral", "tangerine", "apricot", "copper", "amber",
        "ginger", "gold", "mustard", "lemon", "lime", "olive", "emerald", "jade", "mint", "sage",
        "navy", "sapphire", "denim", "lavender", "lilac", "plum", "amethyst", "rose", "salmon",
        "chocolate", "bronze", "caramel", "chestnut", "rust", "ebony", "ivory", "cream", "pearl",
        "silver", "charcoal", "slate", "ash", "tan",
    }
)  # fmt: skip

#: Synonyms, singular → GenEval class. Plurals are derived (with IRREGULAR_PLURALS).
SYNONYMS: dict[str, str] = {
    **dict.fromkeys(
        ["man", "woman", "boy", "girl", "child", "kid", "baby", "lady", "gentleman", "human", "adult"],
        "person",
    ),
    **dict.fromkeys(["bike"], "bicycle"),
    **dict.fromkeys(["motorbike", "scooter"], "motorcycle"),
    **dict.fromkeys(["plane", "aeroplane", "airliner", "jet"], "airplane"),
    **dict.fromkeys(["ship", "sailboat", "canoe"], "boat"),
    **dict.fromkeys(["lorry", "pickup truck"], "truck"),
    **dict.fromkeys(["automobile", "taxi"], "car"),
    **dict.fromkeys(["traffic signal", "stoplight"], "traffic light"),
    **dict.fromkeys(["hydrant"], "fire hydrant"),
    **dict.fromkeys(["puppy"], "dog"),
    **dict.fromkeys(["kitten", "kitty"], "cat"),
    **dict.fromkeys(["pony"], "horse"),
    **dict.fromkeys(["lamb"], "sheep"),
    **dict.fromkeys(["teddy", "teddybear"], "teddy bear"),
    **dict.fromkeys(["purse", "handbag", "bag"], "handbag"),
    **dict.fromkeys(["necktie"], "tie"),
    **dict.fromkeys(["ski"], "skis"),
    **dict.fromkeys(["ball", "football", "soccer ball", "basketball", "tennis ball"], "sports ball"),
    **dict.fromkeys(["racket", "racquet", "tennis racquet"], "tennis racket"),
    **dict.fromkeys(["bat"], "baseball bat"),
    **dict.fromkeys(["glove", "mitt", "baseball mitt"], "baseball glove"),
    **dict.fromkeys(["glass", "wineglass"], "wine glass"),
    **dict.fromkeys(["mug", "teacup"], "cup"),
    **dict.fromkeys(["doughnut"], "donut"),
    **dict.fromkeys(["hotdog"], "hot dog"),
    **dict.fromkeys(["sofa"], "couch"),
    **dict.fromkeys(["plant", "houseplant", "pot plant"], "potted plant"),
    **dict.fromkeys(["table", "dinner table", "kitchen table"], "dining table"),
    **dict.fromkeys(["television", "tv set", "television set"], "tv"),
    **dict.fromkeys(["laptop computer", "notebook computer"], "laptop"),
    **dict.fromkeys(["mouse"], "computer mouse"),
    **dict.fromkeys(["remote", "remote control", "tv remote control"], "tv remote"),
    **dict.fromkeys(["keyboard"], "computer keyboard"),
    **dict.fromkeys(["phone", "cellphone", "mobile phone", "smartphone", "mobile"], "cell phone"),
    **dict.fromkeys(["fridge"], "refrigerator"),
    **dict.fromkeys(["hair dryer", "hairdryer", "blow dryer"], "hair drier"),
    **dict.fromkeys(["microwave oven"], "microwave"),
    **dict.fromkeys(["flower pot"], "vase"),
}

#: Plurals English does not make with -s/-es. Keyed by the last word of a noun.
IRREGULAR_PLURALS: dict[str, str] = {
    "person": "people",
    "man": "men",
    "woman": "women",
    "child": "children",
    "gentleman": "gentlemen",
    "mouse": "mice",
    "knife": "knives",
    "sheep": "sheep",
    "lamb": "lambs",
    "skis": "skis",
    "scissors": "scissors",
    "broccoli": "broccoli",
    "fish": "fish",
    "deer": "deer",
    "wolf": "wolves",
    "leaf": "leaves",
    "shelf": "shelves",
    "loaf": "loaves",
    "tooth": "teeth",
    "foot": "feet",
    "goose": "geese",
}


def pluralize(noun: str) -> str:
    """English plural of a (possibly multi-word) noun: only the last word changes.

    >>> pluralize("wine glass"), pluralize("person"), pluralize("puppy"), pluralize("computer mouse")
    ('wine glasses', 'people', 'puppies', 'computer mice')
    """
    head, _, last = noun.rpartition(" ")
    prefix = f"{head} " if head else ""
    if last in IRREGULAR_PLURALS:
        return prefix + IRREGULAR_PLURALS[last]
    if last.endswith(("s", "x", "z", "ch", "sh")):
        return f"{prefix}{last}es"
    if last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        return f"{prefix}{last[:-1]}ies"
    return prefix + last + "s"


def geneval_plural(name: str) -> str:
    """GenEval's own plural (``make_plural`` in its create_prompts.py): "-es" after s, else "-s".

    >>> geneval_plural("bus"), geneval_plural("sandwich"), geneval_plural("knife")
    ('buses', 'sandwichs', 'knifes')
    """
    return f"{name}es" if name.endswith("s") else f"{name}s"


#: Nouns ending in "-ie", whose plural is "-ies" but whose singular is not "-y".
_IE_NOUNS = {
    "cookie", "movie", "pie", "brownie", "zombie", "rookie", "calorie", "selfie", "smoothie",
    "magpie", "goalie", "collie", "genie", "budgie", "hoodie", "beanie", "necktie", "bowtie",
    "birdie", "prairie", "lingerie", "sweetie", "pixie", "roomie", "veggie", "auntie", "sortie",
}  # fmt: skip


def singularize(word: str) -> str:
    """Best-effort singular of an unknown noun, for labelling generic objects.

    >>> singularize("dragons"), singularize("ponies"), singularize("boxes"), singularize("cookies")
    ('dragon', 'pony', 'box', 'cookie')
    """
    for singular, plural in IRREGULAR_PLURALS.items():
        if word == plural:
            return singular
    if word[:-1] in _IE_NOUNS:
        return word[:-1]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is", "os")) and len(word) > 3:
        return word[:-1]
    return word


def looks_plural(word: str) -> bool:
    """Whether an unknown noun reads as plural ("dragons" yes, "cactus" no)."""
    return singularize(word) != word


class NounForm(NamedTuple):
    """What a written noun means: its class, its singular spelling, and whether it was plural."""

    cls: str
    singular: str  # the written noun in the singular ("man" for "men"): used in instructions
    plural: bool


def _build_nouns() -> dict[str, NounForm]:
    nouns: dict[str, NounForm] = {}
    # Synonyms first so that class names win where a form is both ("handbag").
    for singular, cls in [*SYNONYMS.items(), *((c, c) for c in COCO_CLASSES)]:
        for plural in {pluralize(singular), geneval_plural(singular)}:
            if plural != singular:
                nouns[plural] = NounForm(cls, singular, True)
        nouns[singular] = NounForm(cls, singular, False)
    nouns["people"] = NounForm("person", "person", True)
    return nouns


#: Every known written form (singular, plural, GenEval plural, synonyms) → its meaning.
NOUNS: dict[str, NounForm] = _build_nouns()
#: Longest known noun, in words: the parser tries that many words first.
MAX_NOUN_WORDS: int = max(len(form.split()) for form in NOUNS)


def lookup_noun(text: str) -> NounForm | None:
    """The class a written noun (one or more words, lower case) names, or None."""
    return NOUNS.get(text)


#: Exact counts. "a"/"an" are handled by the parser (they also start "a few", "a pair of").
COUNT_WORDS: dict[str, int] = {
    "zero": 0,
    "no": 0,
    "one": 1,
    "single": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "hundred": 100,
    "thousand": 1000,
    "million": 1_000_000,
    "billion": 1_000_000_000,
    "both": 2,
    "couple": 2,
    "pair": 2,
    "several": 3,
    "few": 3,
    "some": 3,
    "many": 5,
    "dozen": 12,
    "dozens": 24,
    "hundreds": 200,
    "thousands": 2000,
    "millions": 2_000_000,
}
#: Number words GenEval writes (its ``numbers`` list), index = value.
NUMBER_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)
