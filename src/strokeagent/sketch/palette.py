"""Colours: the named palette, measuring a colour from pixels, class defaults, drift.

    >>> nearest_color((250, 10, 10))
    'red'
    >>> default_rgb("cup") == default_rgb("cup")
    True

Named colours come from ``strokeagent.scene.vocab.COLORS`` (the parser's
vocabulary), so the drafter paints and the reflector measures with the same
table. A colour is measured as the most common nearest-named-colour over an
instance's visible pixels, leaving out the outline ink (line art is not the
object's colour, just as a viewer ignores the pen lines of a sketch).
"""

from __future__ import annotations

import colorsys
import hashlib
from functools import cache

import numpy as np

RGB = tuple[int, int, int]

OUTLINE: RGB = (34, 34, 40)
LABEL_INK: RGB = (40, 40, 48)
LABEL_HALO: RGB = (250, 248, 242)


@cache
def named_colors() -> dict[str, RGB]:
    """The colour names a prompt may use, with the rgb the drafter paints them in."""
    from strokeagent.scene.vocab import COLORS

    return {name: tuple(int(c) for c in rgb) for name, rgb in COLORS.items()}


@cache
def _table() -> tuple[tuple[str, ...], np.ndarray]:
    names = tuple(named_colors())
    return names, np.array([named_colors()[n] for n in names], dtype=np.int32)


def nearest_index(pixels: np.ndarray) -> np.ndarray:
    """For an (N, 3) array of rgb pixels, the index of each one's nearest named colour."""
    _, table = _table()
    d = ((pixels[:, None, :].astype(np.int32) - table[None, :, :]) ** 2).sum(-1)
    return d.argmin(1)


def nearest_color(rgb: RGB) -> str:
    names, _ = _table()
    return names[int(nearest_index(np.array([rgb]))[0])]


def color_names() -> tuple[str, ...]:
    return _table()[0]


def default_rgb(cls: str) -> RGB:
    """A stable, muted colour for an object the prompt gave no colour: a soft tint per class."""
    # Low saturation keeps uncoloured objects visually apart from the saturated named colours.
    hue = int(hashlib.sha256(cls.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.22, 0.78)
    return (round(r * 255), round(g * 255), round(b * 255))


def rgb_for(color: str | None, cls: str) -> RGB:
    return named_colors()[color] if color else default_rgb(cls)


def drifted_rgb(rgb: RGB, rng: np.random.Generator) -> RGB:
    """A colour that measures as a different named colour than ``rgb``.

    Half the time another named colour outright, else the hue turned until the
    measurement flips, as when a painter's mix goes off.
    """
    names = color_names()
    own = nearest_color(rgb)
    if rng.random() < 0.5:
        others = [n for n in names if n != own]
        return named_colors()[others[int(rng.integers(len(others)))]]
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    s, v = max(s, 0.6), max(v, 0.6)  # greys have no hue to turn
    for _ in range(24):
        turned = colorsys.hsv_to_rgb((h + rng.uniform(0.12, 0.5)) % 1.0, s, v)
        out = (round(turned[0] * 255), round(turned[1] * 255), round(turned[2] * 255))
        if nearest_color(out) != own:
            return out
    others = [n for n in names if n != own]
    return named_colors()[others[0]]
