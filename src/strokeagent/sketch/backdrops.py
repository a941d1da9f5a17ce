"""Backdrops for scene phrases ("on the beach", "in a kitchen", "at night").

    >>> backdrop("beach", 64).getpixel((0, 0)) != backdrop(None, 64).getpixel((0, 0))
    True

A backdrop is two or three pale bands (sky, ground, a horizon detail), drawn in
washed-out tones: they are never a saturated named colour, and they are never in
the id buffer, so colour measurement (which reads an instance's own pixels only)
cannot mistake a backdrop for an object. Unknown phrases get a faint horizon.
"""

from __future__ import annotations

from functools import cache

from PIL import Image, ImageDraw

PAPER = (246, 244, 238)

# phrase -> (sky, ground, horizon as a fraction of the height)
_SCENES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], float]] = {
    "beach": ((222, 236, 244), (242, 230, 204), 0.55),
    "sea": ((222, 236, 244), (200, 220, 232), 0.5),
    "ocean": ((222, 236, 244), (200, 220, 232), 0.5),
    "lake": ((226, 236, 240), (206, 222, 230), 0.55),
    "park": ((226, 238, 244), (214, 230, 206), 0.5),
    "field": ((228, 238, 244), (222, 232, 204), 0.5),
    "garden": ((226, 238, 244), (212, 228, 206), 0.5),
    "forest": ((220, 232, 226), (204, 218, 200), 0.45),
    "grass": ((228, 238, 244), (214, 230, 206), 0.5),
    "snow": ((230, 234, 240), (248, 248, 250), 0.5),
    "desert": ((236, 234, 226), (238, 224, 200), 0.5),
    "mountain": ((224, 232, 240), (216, 214, 210), 0.55),
    "city": ((226, 230, 236), (214, 212, 210), 0.6),
    "street": ((226, 230, 236), (208, 208, 208), 0.6),
    "kitchen": ((238, 234, 226), (222, 214, 202), 0.62),
    "room": ((238, 234, 228), (220, 212, 200), 0.65),
    "bedroom": ((236, 230, 234), (220, 212, 200), 0.65),
    "living room": ((238, 234, 228), (220, 212, 200), 0.65),
    "office": ((232, 234, 236), (214, 214, 214), 0.65),
    "table": ((240, 238, 232), (224, 212, 196), 0.6),
    "night": ((70, 78, 104), (92, 96, 110), 0.65),
    "sky": ((222, 234, 246), (232, 240, 248), 0.9),
}


def _scene_for(phrase: str) -> tuple[tuple[int, int, int], tuple[int, int, int], float] | None:
    phrase = phrase.lower()
    for name in sorted(_SCENES, key=len, reverse=True):  # "living room" before "room"
        if name in phrase:
            return _SCENES[name]
    return None


@cache
def _base(phrase: str | None, size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), PAPER)
    if phrase is None:
        return image
    draw = ImageDraw.Draw(image)
    scene = _scene_for(phrase) or (PAPER, (236, 234, 228), 0.62)
    sky, ground, horizon = scene
    y = round(size * horizon)
    draw.rectangle((0, 0, size, y), fill=sky)
    draw.rectangle((0, y, size, size), fill=ground)
    line = tuple(max(0, c - 18) for c in ground)
    draw.line((0, y, size, y), fill=line, width=2)
    if "night" in phrase.lower():
        r = size // 16
        draw.ellipse((size - 3 * r, r, size - r, 3 * r), fill=(236, 234, 214))
    return image


def backdrop(phrase: str | None, size: int) -> Image.Image:
    """A fresh RGB image of the backdrop for ``phrase`` (None: plain paper)."""
    return _base(phrase, size).copy()
