"""Stroke glyphs: every instance drawn as a filled, outlined silhouette with its label.

    >>> from strokeagent.sketch.document import Drawn, SketchDocument
    >>> doc = SketchDocument(size=128).add(Drawn(iid=0, object_id="o0", cls="dog",
    ...     supercategory="animal", rgb=(130, 80, 40), box=(20, 20, 100, 80)))
    >>> image, ids = render(doc)
    >>> image.size, ids.dtype.name, int(ids.max())
    ((128, 128), 'uint16', 1)

Why Pillow: it is already a dependency; it draws a 512 px canvas of twelve
glyphs, backdrop, labels and id buffer in 4–7 ms on a shared 2-core machine
(``benchmarks/sketch_render.py``; encoding the PNG costs more); and — the
reason that decides it — its shapes are not anti-aliased, so the very same calls
drawn into a 32-bit integer image give an object-id buffer that matches the RGB
pixels exactly, with no fractional edge pixels to attribute. skia-python and
pycairo draw prettier anti-aliased edges, but their ids would need a second,
aliased pass whose edges differ from the colour pass by a pixel, and they would
add a compiled dependency (neither is installed here, so neither was timed).
Only label text is anti-aliased, and it goes into the RGB pixels alone: a label
is not part of its object.

A glyph is a list of shapes in the unit square (u right, v down). Each shape is
filled with the object's colour (``"fill"``) or with outline ink (``"ink"``),
and outlined; detail strokes are thin ink lines kept off the box edges. Every
glyph touches all four sides of its box, so a fully visible instance's pixel
bounding box is exactly its ``box`` — the layout can reason with boxes and the
reflector with pixels, and both agree.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from strokeagent.sketch.document import Box, Drawn, SketchDocument
from strokeagent.sketch.palette import LABEL_HALO, LABEL_INK, OUTLINE

# (kind, geometry, tone): kind is ellipse | rect | rrect | poly | ring | line.
Shape = tuple[str, tuple, str]

GLYPHS: dict[str, list[Shape]] = {
    "person": [
        ("poly", ((0.22, 0.3), (0.0, 0.58), (0.1, 0.64), (0.3, 0.44)), "fill"),
        ("poly", ((0.78, 0.3), (1.0, 0.58), (0.9, 0.64), (0.7, 0.44)), "fill"),
        ("rect", (0.3, 0.62, 0.48, 1.0), "fill"),
        ("rect", (0.52, 0.62, 0.7, 1.0), "fill"),
        ("poly", ((0.2, 0.27), (0.8, 0.27), (0.72, 0.68), (0.28, 0.68)), "fill"),
        ("ellipse", (0.3, 0.0, 0.7, 0.28), "fill"),
    ],
    "vehicle": [
        ("poly", ((0.22, 0.4), (0.34, 0.0), (0.7, 0.0), (0.84, 0.4)), "fill"),
        ("rrect", (0.0, 0.34, 1.0, 0.82), "fill"),
        ("ellipse", (0.1, 0.6, 0.38, 1.0), "fill"),
        ("ellipse", (0.62, 0.6, 0.9, 1.0), "fill"),
        ("ring", (0.2, 0.72, 0.28, 0.88), "ink"),
        ("ring", (0.72, 0.72, 0.8, 0.88), "ink"),
    ],
    "outdoor": [
        ("rect", (0.42, 0.6, 0.58, 0.96), "fill"),
        ("rect", (0.2, 0.9, 0.8, 1.0), "fill"),
        (
            "poly",
            (
                (0.29, 0.0),
                (0.71, 0.0),
                (1.0, 0.19),
                (1.0, 0.45),
                (0.71, 0.64),
                (0.29, 0.64),
                (0.0, 0.45),
                (0.0, 0.19),
            ),
            "fill",
        ),
    ],
    "animal": [
        ("poly", ((0.0, 0.2), (0.07, 0.18), (0.22, 0.42), (0.14, 0.47)), "fill"),
        ("rect", (0.2, 0.58, 0.3, 1.0), "fill"),
        ("rect", (0.34, 0.58, 0.44, 1.0), "fill"),
        ("rect", (0.56, 0.58, 0.66, 1.0), "fill"),
        ("rect", (0.7, 0.58, 0.8, 1.0), "fill"),
        ("ellipse", (0.1, 0.28, 0.84, 0.74), "fill"),
        ("poly", ((0.69, 0.16), (0.74, 0.0), (0.81, 0.13)), "fill"),
        ("poly", ((0.86, 0.13), (0.93, 0.0), (0.97, 0.17)), "fill"),
        ("ellipse", (0.64, 0.08, 1.0, 0.5), "fill"),
        ("ellipse", (0.85, 0.22, 0.9, 0.29), "ink"),
    ],
    "accessory": [
        ("ring", (0.24, 0.0, 0.76, 0.66), "ink"),
        ("poly", ((0.07, 0.32), (0.93, 0.32), (1.0, 1.0), (0.0, 1.0)), "fill"),
    ],
    "sports": [
        ("ellipse", (0.0, 0.0, 1.0, 1.0), "fill"),
    ],
    "kitchen": [
        ("ring", (0.58, 0.24, 1.0, 0.72), "ink"),
        ("poly", ((0.0, 0.08), (0.8, 0.08), (0.69, 1.0), (0.11, 1.0)), "fill"),
        ("ellipse", (0.0, 0.0, 0.8, 0.17), "fill"),
    ],
    "food": [
        ("ellipse", (0.0, 0.16, 1.0, 1.0), "fill"),
        ("poly", ((0.46, 0.24), (0.5, 0.0), (0.58, 0.0), (0.55, 0.24)), "ink"),
        ("ellipse", (0.55, 0.02, 0.85, 0.17), "fill"),
    ],
    "furniture": [
        ("rect", (0.0, 0.0, 0.55, 0.62), "fill"),
        ("rect", (0.02, 0.64, 0.2, 1.0), "fill"),
        ("rect", (0.8, 0.64, 0.98, 1.0), "fill"),
        ("rect", (0.0, 0.48, 1.0, 0.68), "fill"),
    ],
    "electronic": [
        ("poly", ((0.36, 0.78), (0.64, 0.78), (0.78, 1.0), (0.22, 1.0)), "fill"),
        ("rrect", (0.0, 0.0, 1.0, 0.82), "fill"),
        ("line", ((0.1, 0.1), (0.9, 0.1), (0.9, 0.7), (0.1, 0.7), (0.1, 0.1)), "ink"),
    ],
    "appliance": [
        ("rect", (0.08, 0.9, 0.22, 1.0), "fill"),
        ("rect", (0.78, 0.9, 0.92, 1.0), "fill"),
        ("rrect", (0.0, 0.0, 1.0, 0.95), "fill"),
        ("line", ((0.06, 0.36), (0.94, 0.36)), "ink"),
        ("line", ((0.82, 0.12), (0.82, 0.28)), "ink"),
        ("line", ((0.82, 0.46), (0.82, 0.7)), "ink"),
    ],
    "indoor": [
        (
            "poly",
            (
                (0.3, 0.0),
                (0.7, 0.0),
                (0.62, 0.16),
                (0.95, 0.4),
                (1.0, 0.62),
                (0.8, 1.0),
                (0.2, 1.0),
                (0.0, 0.62),
                (0.05, 0.4),
                (0.38, 0.16),
            ),
            "fill",
        ),
    ],
    "generic": [
        ("rrect", (0.0, 0.0, 1.0, 1.0), "fill"),
    ],
}

#: Width over height of each glyph's natural box: cars are wide, people tall.
ASPECT: dict[str, float] = {
    "person": 0.6, "vehicle": 1.5, "outdoor": 0.7, "animal": 1.35, "accessory": 1.0, "sports": 1.0,
    "kitchen": 0.95, "food": 1.0, "furniture": 0.85, "electronic": 1.25, "appliance": 0.65,
    "indoor": 0.8, "generic": 1.0,
}  # fmt: skip

#: Where each silhouette carries its class mark (u0, v0, u1, v1): a patch of solid fill, clear of details.
MARK_RECT: dict[str, tuple[float, float, float, float]] = {
    "person": (0.36, 0.34, 0.64, 0.6), "vehicle": (0.4, 0.4, 0.6, 0.78), "outdoor": (0.22, 0.12, 0.78, 0.52),
    "animal": (0.22, 0.38, 0.6, 0.65), "accessory": (0.22, 0.44, 0.78, 0.9), "sports": (0.22, 0.22, 0.78, 0.78),
    "kitchen": (0.16, 0.3, 0.62, 0.88), "food": (0.2, 0.36, 0.8, 0.86), "furniture": (0.08, 0.08, 0.47, 0.42),
    "electronic": (0.2, 0.2, 0.8, 0.6), "appliance": (0.14, 0.45, 0.7, 0.86), "indoor": (0.24, 0.44, 0.76, 0.88),
    "generic": (0.2, 0.2, 0.8, 0.8),
}  # fmt: skip

#: The class marks: ink strokes in the mark rect's unit square, one pattern per class of a supercategory.
MARKS: tuple[tuple[tuple[tuple[float, float], ...], ...], ...] = (
    (((0.0, 0.5), (1.0, 0.5)),),  # -
    (((0.5, 0.0), (0.5, 1.0)),),  # |
    (((0.0, 1.0), (1.0, 0.0)),),  # /
    (((0.0, 0.0), (1.0, 1.0)),),  # \
    (((0.0, 0.2), (1.0, 0.2)), ((0.0, 0.8), (1.0, 0.8))),  # =
    (((0.2, 0.0), (0.2, 1.0)), ((0.8, 0.0), (0.8, 1.0))),  # ||
    (((0.0, 0.0), (1.0, 1.0)), ((0.0, 1.0), (1.0, 0.0))),  # x
    (((0.0, 0.5), (1.0, 0.5)), ((0.5, 0.0), (0.5, 1.0))),  # +
    (((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)),),  # square
    (((0.0, 1.0), (0.5, 0.0), (1.0, 1.0)),),  # ^
)


@cache
def _classes_by_kind() -> dict[str, tuple[str, ...]]:
    from strokeagent.scene.vocab import COCO_CLASSES

    out: dict[str, list[str]] = {}
    for cls, sc in COCO_CLASSES.items():
        out.setdefault(glyph_kind(sc), []).append(cls)
    return {k: tuple(v) for k, v in out.items()}


def classes_of_kind(kind: str) -> tuple[str, ...]:
    """The classes drawn with ``kind``'s silhouette, in mark order (mark k is the k-th class)."""
    return _classes_by_kind().get(kind, ())


def class_mark(cls: str, kind: str) -> int:
    """Which of ``MARKS`` a ``cls`` glyph of silhouette ``kind`` carries."""
    known = classes_of_kind(kind)
    if cls in known:
        return known.index(cls)
    import hashlib

    return int(hashlib.sha256(cls.encode()).hexdigest()[:8], 16) % len(MARKS)


LABEL_SIZE = 12
LABEL_GAP = 2


def glyph_kind(supercategory: str) -> str:
    return supercategory if supercategory in GLYPHS else "generic"


def stroke_width(box: Box) -> int:
    return max(2, round(min(box[2] - box[0], box[3] - box[1]) * 0.03))


def _draw_glyph(
    draws: list[tuple[ImageDraw.ImageDraw, object, object]], kind: str, box: Box, mark: int | None = None
) -> None:
    """Draw one glyph with the same geometry into every (draw, fill, ink) target, its class mark last."""
    x0, y0, x1, y1 = box
    sx, sy = x1 - x0 - 1, y1 - y0 - 1
    width = stroke_width(box)

    def pt(u: float, v: float) -> tuple[float, float]:
        return (x0 + u * sx, y0 + v * sy)

    def rect(g: tuple) -> tuple[float, float, float, float]:
        return (*pt(g[0], g[1]), *pt(g[2], g[3]))

    for shape, g, tone in GLYPHS[kind]:
        for draw, fill, ink in draws:
            colour = fill if tone == "fill" else ink
            if shape == "ellipse":
                draw.ellipse(rect(g), fill=colour, outline=ink, width=width)
            elif shape == "rect":
                draw.rectangle(rect(g), fill=colour, outline=ink, width=width)
            elif shape == "rrect":
                r = rect(g)
                draw.rounded_rectangle(r, radius=min(r[2] - r[0], r[3] - r[1]) * 0.18, fill=colour,
                                       outline=ink, width=width)  # fmt: skip
            elif shape == "poly":
                draw.polygon([pt(u, v) for u, v in g], fill=colour, outline=ink, width=width)
            elif shape == "ring":
                draw.ellipse(rect(g), outline=ink, width=width + 1)
            elif shape == "line":
                draw.line([pt(u, v) for u, v in g], fill=ink, width=width)
    if mark is not None:
        for draw, _, ink in draws:
            for stroke in mark_strokes(kind, mark):
                draw.line([pt(u, v) for u, v in stroke], fill=ink, width=width)


def mark_strokes(kind: str, mark: int) -> list[list[tuple[float, float]]]:
    """Mark ``mark`` of silhouette ``kind`` as polylines in the glyph's unit square."""
    m0, n0, m1, n1 = MARK_RECT[kind]
    return [[(m0 + a * (m1 - m0), n0 + b * (n1 - n0)) for a, b in stroke] for stroke in MARKS[mark]]


@cache
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=LABEL_SIZE)


def label_box(cls: str, box: Box) -> Box:
    """Where the label of a ``cls`` glyph in ``box`` goes: centred under the glyph."""
    left, _, right, _ = _font().getbbox(cls)
    w = right - left + 6  # room for the light halo around the text
    cx = (box[0] + box[2]) // 2
    y = box[3] + LABEL_GAP
    return (cx - w // 2, y, cx + w - w // 2, y + LABEL_SIZE + 5)


def footprint(cls: str, box: Box) -> Box:
    """Every pixel a ``cls`` glyph drawn in ``box`` may touch: the glyph and its label."""
    lb = label_box(cls, box)
    return (min(box[0], lb[0]), box[1], max(box[2], lb[2]), lb[3])


def _draw_label(draw: ImageDraw.ImageDraw, d: Drawn) -> None:
    cx = (d.box[0] + d.box[2]) / 2
    draw.text((cx, d.box[3] + LABEL_GAP + 2), d.cls, font=_font(), anchor="mt", fill=LABEL_INK,
              stroke_width=2, stroke_fill=LABEL_HALO)  # fmt: skip


@cache
def glyph_mask(kind: str, w: int, h: int) -> np.ndarray:
    """The pixels a glyph covers in a ``w`` × ``h`` box, as a bool array (read-only).

    Class marks lie inside the silhouette, so every class of a kind covers the same pixels."""
    im = Image.new("L", (w, h), 0)
    _draw_glyph([(ImageDraw.Draw(im), 1, 1)], kind, (0, 0, w, h))
    mask = np.asarray(im, dtype=bool)
    mask.flags.writeable = False
    return mask


#: Values of ``glyph_template``: nothing, fill colour, outline ink, the mark patch (either).
EMPTY, FILL, INK, MARK = 0, 1, 2, 3


@lru_cache(maxsize=8192)
def glyph_template(kind: str, w: int, h: int, mark: int | None = None) -> np.ndarray:
    """What a ``kind`` glyph looks like in a ``w`` × ``h`` box, pixel by pixel (read-only uint8):
    ``FILL`` where its colour shows, ``INK`` where its outline or details do; with ``mark=None`` the
    class-mark patch is ``MARK`` (it differs between classes), else that mark is drawn in ink."""
    im = Image.new("L", (w, h), EMPTY)
    _draw_glyph([(ImageDraw.Draw(im), FILL, INK)], kind, (0, 0, w, h), mark)
    out = np.array(im, dtype=np.uint8)
    if mark is None:
        m0, n0, m1, n1 = MARK_RECT[kind]
        x0, x1 = round(m0 * (w - 1)), round(m1 * (w - 1)) + 1
        y0, y1 = round(n0 * (h - 1)), round(n1 * (h - 1)) + 1
        pad = stroke_width((0, 0, w, h))
        patch = out[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]
        patch[patch == FILL] = MARK
    out.flags.writeable = False
    return out


def render(doc: SketchDocument) -> tuple[Image.Image, np.ndarray]:
    """The document's RGB pixels and its object-id buffer (0 = backdrop, k = instance iid k).

    Pure and deterministic: the same document always gives the same bytes.
    """
    from strokeagent.sketch.backdrops import backdrop

    image = backdrop(doc.background, doc.size)
    ids = Image.new("I", (doc.size, doc.size), 0)
    pen, id_pen = ImageDraw.Draw(image), ImageDraw.Draw(ids)
    for d in sorted(doc.instances, key=lambda d: (d.z, d.iid)):
        kind = glyph_kind(d.supercategory)
        _draw_glyph([(pen, d.rgb, OUTLINE), (id_pen, d.iid, d.iid)], kind, d.box, class_mark(d.cls, kind))
        _draw_label(pen, d)
    return image, np.asarray(ids).astype(np.uint16)
