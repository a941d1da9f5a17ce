"""The canvas judge's own eyes: objects found in a stroke canvas's pixels, by analysis by synthesis.

    >>> from strokeagent.sketch.document import Drawn, SketchDocument
    >>> from strokeagent.sketch.glyphs import render
    >>> doc = SketchDocument(size=256).add(Drawn(iid=0, object_id="o0", cls="cup", supercategory="kitchen",
    ...     rgb=(20, 60, 220), box=(30, 40, 130, 140)))
    >>> [(f.cls, f.color, f.box) for f in detect(render(doc)[0], ["cup"])]
    [('cup', 'blue', (30, 40, 130, 140))]

This module reads nothing but pixels. It shares no code with the sketch
inspector (``sketch.measure``, ``sketch.perceive``, ``sketch.reflector``) and
never sees a document, an id buffer, or a label's text. The renderer is used
only as a *synthesiser*: to learn what a class's glyph looks like at a given
size, a one-instance document is rendered at run time (so glyph redesigns need
no change here).

1. **Backdrop.** A backdrop is horizontal bands spanning the canvas, so a row's
   backdrop colour is the colour at both its ends; rows whose ends differ (an
   object over one edge) take the nearest agreeing row's colour.
2. **Fill regions.** Glyphs are flat fills outlined in the renderer's outline ink
   (``palette.OUTLINE``) and nothing else is drawn unaliased in one exact colour
   over an area: a fill region is a 4-connected region of one exact colour, not
   backdrop, of at least ``MIN_REGION`` pixels, whose border is mostly outline
   ink (label halos, the moon and blends are not).
3. **Candidates.** Fill regions of one colour joined through outline ink within
   twice a stroke's width (the parts of one glyph) form a candidate object.
4. **Class.** For every silhouette the renderer can draw (classes with identical
   silhouettes are one group), the glyph is rendered into the box its fill
   implies and compared with the candidate's fill: IoU, where the rendered
   pixels hidden under other objects count neither way. The best group names
   the class; below ``MIN_IOU`` the candidate is an unrecognised shape.
5. **Colour** is the fill's exact rgb named by its nearest palette colour;
   **visible fraction** the candidate's fill over the full rendered fill (off
   the canvas included), so an instance counts when at least half shows; **box**
   the bounds of the rendered glyph's pixels that show (its fill and ink).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from PIL import Image

from strokeagent.sketch.document import Drawn, SketchDocument
from strokeagent.sketch.glyphs import render
from strokeagent.sketch.palette import OUTLINE, named_colors

Box = tuple[int, int, int, int]

MIN_REGION = 24  # pixels: smaller exact-colour specks are text blends, not fills
MIN_INKED = 0.4  # of a fill region's border pixels, at least this many are outline ink
MIN_IOU = 0.55  # a candidate whose best silhouette matches worse is an unrecognised shape
TIE = 0.002  # silhouettes within this IoU of the best are equally good readings
HIDDEN_THRESHOLD = 0.5  # an instance counts when at least half of it shows
SYNTH_RGB = (1, 2, 3)  # the fill the synthesiser paints: no palette colour, not the ink


@dataclass
class Found:
    """One object as the pixels show it."""

    cls: str | None  # the best-matching class (None: no silhouette matches well enough)
    classes: tuple[str, ...]  # every class whose glyph reads as well (identical silhouettes)
    color: str  # nearest named colour of its fill
    rgb: tuple[int, int, int]
    box: Box  # bounds of its visible pixels, end exclusive
    glyph_box: Box  # the whole glyph's fitted box (may reach past the canvas)
    iou: float  # how well the best silhouette explains its fill
    visible: float  # fraction of the fitted glyph's fill that shows
    area: int  # fill pixels seen
    score: float = field(default=0.0)  # confidence for GenEval's ranking

    @property
    def counts(self) -> bool:
        return self.cls is not None and self.visible >= HIDDEN_THRESHOLD

    def to_json(self) -> dict:
        return {
            "class": self.cls,
            "classes": list(self.classes),
            "color": self.color,
            "rgb": list(self.rgb),
            "box": list(self.box),
            "iou": round(self.iou, 3),
            "visible": round(self.visible, 3),
            "counts": self.counts,
        }


# -- connected components (no scipy): runs per row, joined by union-find -------------


def _label(keys: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of equal ``keys`` among ``valid`` pixels: labels 1..n (0 elsewhere)."""
    h, w = keys.shape
    labels = np.zeros((h, w), np.int32)
    parent: list[int] = [0]

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    prev: list[tuple[int, int, int, int]] = []  # (start, end, key, label) of the row above
    for y in range(h):
        row_k, row_v = keys[y], valid[y]
        change = np.ones(w + 1, bool)
        change[1:w] = (row_k[1:] != row_k[:-1]) | (row_v[1:] != row_v[:-1])
        edges = np.flatnonzero(change)
        runs = []
        j = 0
        for s, e in zip(edges[:-1], edges[1:], strict=True):
            if not row_v[s]:
                continue
            k = int(row_k[s])
            lab = len(parent)
            parent.append(lab)
            while j < len(prev) and prev[j][1] <= s:
                j += 1
            jj = j
            while jj < len(prev) and prev[jj][0] < e:
                if prev[jj][2] == k:
                    ra, rb = find(lab), find(prev[jj][3])
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
                jj += 1
            runs.append((int(s), int(e), k, lab))
            labels[y, s:e] = lab
        prev = runs
    roots = np.array([find(i) for i in range(len(parent))], np.int32)
    uniq, dense = np.unique(roots, return_inverse=True)
    dense = dense.astype(np.int32)  # root 0 (background) maps to 0
    return dense[labels], len(uniq) - 1


def _pack(px: np.ndarray) -> np.ndarray:
    return (px[..., 0].astype(np.int32) << 16) | (px[..., 1].astype(np.int32) << 8) | px[..., 2]


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


# -- the backdrop -----------------------------------------------------------------


def backdrop_mask(packed: np.ndarray) -> np.ndarray:
    """Where the canvas shows its backdrop: per row, the colour found at both of its ends."""
    h, _ = packed.shape
    left, right = packed[:, 0], packed[:, -1]
    agree = left == right
    colour = np.where(agree, left, -1)
    known = np.flatnonzero(agree)
    if len(known) == 0:
        return np.zeros(packed.shape, bool)
    for y in np.flatnonzero(~agree):
        # The nearest agreeing row whose colour this row shows at one of its ends; else the nearest at all.
        order = known[np.argsort(np.abs(known - y), kind="stable")]
        pick = next((colour[k] for k in order if colour[k] in (left[y], right[y])), colour[order[0]])
        colour[y] = pick
    return packed == colour[:, None]


# -- the synthesiser ----------------------------------------------------------------


@cache
def _synth(cls: str, supercategory: str, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """The glyph the renderer draws for ``cls`` in a ``w`` × ``h`` box at the origin: (fill, whole) masks."""
    size = max(w, h)
    doc = SketchDocument(size=size).add(
        Drawn(iid=0, object_id="s", cls=cls, supercategory=supercategory, rgb=SYNTH_RGB, box=(0, 0, w, h))
    )
    image, ids = render(doc)
    whole = ids[:h, :w] > 0
    fill = whole & (_pack(np.asarray(image.convert("RGB"))[:h, :w]) == _pack(np.array(SYNTH_RGB)))
    whole.flags.writeable = False
    fill.flags.writeable = False
    return fill, whole


def _supercategory(cls: str) -> str:
    from strokeagent.scene.vocab import COCO_CLASSES

    return COCO_CLASSES.get(cls, "generic")


@cache
def silhouette_groups(classes: tuple[tuple[str, str], ...]) -> tuple[tuple[tuple[str, str], ...], ...]:
    """``(cls, supercategory)`` pairs grouped by identical rendered outlines (at two probe sizes).

    Classes of one group cover the same pixels and differ, if at all, by what is drawn inside.
    """
    groups: dict[bytes, list[tuple[str, str]]] = {}
    for cls, sc in classes:
        sig = b"".join(np.packbits(_synth(cls, sc, *size)[1]).tobytes() for size in ((61, 47), (40, 72)))
        groups.setdefault(sig, []).append((cls, sc))
    return tuple(tuple(g) for g in groups.values())


def _aspect(cls: str, sc: str) -> float | None:
    """The renderer's natural width/height for the class's glyph, where it publishes one."""
    from strokeagent.sketch import glyphs

    table = getattr(glyphs, "ASPECT", None)
    kind = getattr(glyphs, "glyph_kind", lambda s: s)(sc)
    if isinstance(table, dict):
        value = table.get(cls, table.get(kind))
        return float(value) if value else None
    return None


def default_classes(extra: Iterable[tuple[str, str]] = ()) -> tuple[tuple[str, str], ...]:
    """GenEval's 80 classes and any others (e.g. a prompt's unknown nouns), with supercategories."""
    from strokeagent.scene.vocab import COCO_CLASSES

    pairs = dict(COCO_CLASSES)
    for cls, sc in extra:
        pairs.setdefault(cls, sc)
    return tuple(sorted(pairs.items()))


# -- fitting one candidate ----------------------------------------------------------


def _fit_box(cls: str, sc: str, fill_box: Box, cut: tuple[bool, bool, bool, bool]) -> Box | None:
    """The glyph box whose rendered fill has ``fill_box`` for its bounds (sides in ``cut`` unreliable)."""
    fx0, fy0, fx1, fy1 = fill_box
    bw, bh = max(fx1 - fx0, 4), max(fy1 - fy0, 4)
    natural = _aspect(cls, sc)
    if natural and any(cut):
        if cut[0] or cut[2]:
            bw = max(4, round(bh * natural))
        else:
            bh = max(4, round(bw / natural))
    for _ in range(3):
        fill, _ = _synth(cls, sc, bw, bh)
        ys, xs = np.nonzero(fill)
        if not len(xs):
            return None
        rx0, rx1, ry0, ry1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        # Fill bounds in the unit box; the glyph box follows from the observed fill bounds.
        u0, u1, v0, v1 = rx0 / bw, rx1 / bw, ry0 / bh, ry1 / bh
        aspect = bw / bh
        if not (cut[0] or cut[2]):
            nbw = (fx1 - fx0) / max(u1 - u0, 1e-3)
        elif not (cut[1] or cut[3]):
            nbw = (fy1 - fy0) / max(v1 - v0, 1e-3) * aspect
        else:
            nbw = bw
        nbh = (fy1 - fy0) / max(v1 - v0, 1e-3) if not (cut[1] or cut[3]) else nbw / aspect
        nbw, nbh = max(4, round(nbw)), max(4, round(nbh))
        if (nbw, nbh) == (bw, bh):
            break
        bw, bh = nbw, nbh
    fill, _ = _synth(cls, sc, bw, bh)
    ys, xs = np.nonzero(fill)
    rx0, rx1, ry0, ry1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    x0 = fx0 - rx0 if not cut[0] else (fx1 - rx1 if not cut[2] else fx0 - rx0)
    y0 = fy0 - ry0 if not cut[1] else (fy1 - ry1 if not cut[3] else fy0 - ry0)
    return (int(x0), int(y0), int(x0 + bw), int(y0 + bh))


def _place(mask: np.ndarray, box: Box, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """``mask`` (drawn in ``box``) pasted into a canvas of ``shape``; and its full pixel count."""
    out = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    H, W = shape
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if cx1 > cx0 and cy1 > cy0:
        out[cy0:cy1, cx0:cx1] = mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return out, int(mask.sum())


def _nearest_name(rgb: tuple[int, int, int]) -> str:
    names = list(named_colors())
    table = np.array([named_colors()[n] for n in names], np.int32)
    return names[int(((table - np.array(rgb, np.int32)) ** 2).sum(1).argmin())]


# -- the detector -------------------------------------------------------------------


def candidates(image: Image.Image) -> list[tuple]:
    """Candidate objects: ``(rgb, fill, outline ink, everything else drawn, other fills)`` per group of regions."""
    px = np.asarray(image.convert("RGB"))
    packed = _pack(px)
    back = backdrop_mask(packed)
    ink = packed == _pack(np.array(OUTLINE))
    fillable = ~back & ~ink
    labels, n = _label(packed, fillable)
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    # How much of each region's outside border is outline ink.
    border = _dilate(labels > 0) & ~(labels > 0)
    inked = np.zeros(n + 1)
    total = np.zeros(n + 1)
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        src = np.roll(labels, (dy, dx), axis=(0, 1))
        edge = border & (src > 0)
        if dy == 1:
            edge[0] = False
        elif dy == -1:
            edge[-1] = False
        elif dx == 1:
            edge[:, 0] = False
        else:
            edge[:, -1] = False
        np.add.at(total, src[edge], 1)
        np.add.at(inked, src[edge & ink], 1)
    good = (sizes >= MIN_REGION) & (inked >= MIN_INKED * np.maximum(total, 1))
    good[0] = False
    fills = good[labels]
    foreground = ~back
    out = []
    # Group regions by colour, joined through ink within about two stroke widths.
    region_colour = np.zeros(n + 1, np.int64)
    flat_lab, flat_key = labels.ravel(), packed.ravel()
    region_colour[flat_lab] = flat_key
    region_colour[0] = -1
    for key in np.unique(region_colour[good]):
        mine = fills & (packed == key)
        ys, xs = np.nonzero(mine)
        side = min(xs.max() - xs.min(), ys.max() - ys.min()) + 1
        reach = 2 * max(2, round(side * 0.04)) + 3
        grown = mine
        through = mine | ink
        for _ in range(reach):
            grown = _dilate(grown) & through
        parts, m = _label(grown.astype(np.int32), grown)
        for p in range(1, m + 1):
            fill = mine & (parts == p)
            if fill.sum() < MIN_REGION:
                continue
            rgb = (int(key) >> 16, (int(key) >> 8) & 255, int(key) & 255)
            out.append((rgb, fill, ink, foreground & ~fill & ~ink, fills & ~fill))
    return out


@cache
def _outline(members: tuple[tuple[str, str], ...], w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """What the classes of one silhouette group share at ``w`` × ``h``: fill where any of two members has it."""
    rfill, whole = _synth(*members[0], w, h)
    if len(members) > 1:
        rfill = rfill | _synth(*members[1], w, h)[0]
    return rfill, whole


def _score(
    cls: str | tuple[tuple[str, str], ...],
    sc: str | None,
    box: Box,
    fill: np.ndarray,
    ink: np.ndarray,
    others: np.ndarray,
) -> float:
    """How well a ``cls`` glyph in ``box`` explains the candidate: IoU of fill, and of ink inside the box.

    ``cls`` may be a silhouette group (``sc`` None): then what its classes share is compared.
    Rendered pixels under other objects count neither way (they may be hidden).
    """
    w, h = box[2] - box[0], box[3] - box[1]
    if w < 4 or h < 4:
        return 0.0
    rfill, whole = _outline(cls, w, h) if sc is None else _synth(cls, sc, w, h)
    pf, _ = _place(rfill, box, fill.shape)
    pw, _ = _place(whole, box, fill.shape)
    pink = pw & ~pf & ~others
    pf &= ~others
    union = int((fill | pf).sum())
    fill_iou = int((fill & pf).sum()) / union if union else 0.0
    seen_ink = ink & pw
    union = int((seen_ink | pink).sum())
    ink_iou = int((seen_ink & pink).sum()) / union if union else 0.0
    return 0.7 * fill_iou + 0.3 * ink_iou


def _refine(cls, sc, box: Box, fill, ink, others) -> tuple[float, Box]:  # noqa: ANN001
    """Coordinate ascent on the box's four sides."""
    best = _score(cls, sc, box, fill, ink, others)
    for step in (8, 4, 2, 1):
        improved = True
        while improved:
            improved = False
            for side in range(4):
                for sign in (-1, 1):
                    trial = list(box)
                    trial[side] += sign * step
                    s = _score(cls, sc, tuple(trial), fill, ink, others)
                    if s > best + 1e-6:
                        best, box, improved = s, tuple(trial), True
    return best, box


def _cut(fb: Box, others: np.ndarray) -> tuple[bool, bool, bool, bool]:
    """Which sides of the fill's bounds may not be the glyph's: at the canvas edge, or against another fill."""
    H, W = others.shape
    x0, y0, x1, y1 = fb
    r = 2 * max(2, round(min(x1 - x0, y1 - y0) * 0.03)) + 3

    def crowded(strip: np.ndarray, length: int) -> bool:
        return bool(strip.any(axis=1 if strip.shape[0] == length else 0).sum() >= 0.25 * length)

    return (
        x0 <= 0 or crowded(others[y0:y1, max(0, x0 - r) : x0], y1 - y0),
        y0 <= 0 or crowded(others[max(0, y0 - r) : y0, x0:x1].T, x1 - x0),
        x1 >= W or crowded(others[y0:y1, x1 : x1 + r], y1 - y0),
        y1 >= H or crowded(others[y1 : y1 + r, x0:x1].T, x1 - x0),
    )


def fit(
    rgb: tuple[int, int, int],
    fill: np.ndarray,
    ink: np.ndarray,
    others: np.ndarray,
    groups: tuple[tuple[tuple[str, str], ...], ...],
    occluders: np.ndarray | None = None,
) -> Found:
    """The best glyph for one candidate's fill, and what follows from it."""
    H, W = fill.shape
    ys, xs = np.nonzero(fill)
    fb = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    cut = _cut(fb, others if occluders is None else occluders)
    area = int(fill.sum())
    first = []
    for group in groups:
        cls, sc = group[0]
        box = _fit_box(cls, sc, fb, cut)
        if box is not None:
            first.append((_score(group, None, box, fill, ink, others), group, box))
    if not first:
        return Found(None, (), _nearest_name(rgb), rgb, fb, fb, 0.0, 1.0, area)
    first.sort(key=lambda s: -s[0])
    # Refine the box of the two best outlines, then read every class of the best one at its box.
    refined = []
    for _, group, box in first[:2]:
        refined.append((*_refine(group, None, box, fill, ink, others), group))
    refined.sort(key=lambda s: -s[0])
    _, box, group = refined[0]
    readings = sorted(
        ((_score(c, sc, box, fill, ink, others), c, sc) for c, sc in group), key=lambda r: -r[0]
    )
    best, cls, sc = readings[0]
    classes = tuple(c for s, c, _ in readings if s >= best - TIE)
    rfill, whole = _synth(cls, sc, box[2] - box[0], box[3] - box[1])
    shown, full = _place(whole, box, fill.shape)
    shown &= fill | ink  # the glyph's pixels that show as its fill or as ink
    sy, sx = np.nonzero(shown | fill)
    vbox = (int(sx.min()), int(sy.min()), int(sx.max()) + 1, int(sy.max()) + 1)
    visible = min(1.0, area / int(rfill.sum())) if rfill.any() else 0.0
    ok = best >= MIN_IOU
    return Found(cls if ok else None, classes if ok else (), _nearest_name(rgb), rgb, vbox, box, best, visible,
                 area, score=round(best, 4))  # fmt: skip


def detect(image: Image.Image, classes: Iterable[str | tuple[str, str]] | None = None) -> list[Found]:
    """Every object the pixels show, largest first.

    ``classes`` are the classes worth considering first (a prompt's): the
    candidate's class is picked among all of GenEval's classes and these, and
    among equally good readings a listed class is named.
    """
    wanted = [(c, _supercategory(c)) if isinstance(c, str) else tuple(c) for c in (classes or ())]
    groups = silhouette_groups(default_classes(wanted))
    prefer = [c for c, _ in wanted]
    found = []
    for rgb, fill, ink, others, occluders in candidates(image):
        f = fit(rgb, fill, ink, others, groups, occluders)
        if f.cls is not None:
            named = [c for c in prefer if c in f.classes]
            if named:
                f.cls = named[0]
        found.append(f)
    found.sort(key=lambda f: -f.area)
    return found
