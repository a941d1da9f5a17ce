"""The inspector's eyes: instances, classes, boxes and colours found from a canvas's RGB pixels alone.

    >>> from strokeagent.sketch.document import Drawn, SketchDocument
    >>> from strokeagent.sketch.glyphs import render
    >>> doc = SketchDocument(size=160).add(Drawn(iid=0, object_id="o0", cls="cup",
    ...     supercategory="kitchen", rgb=(20, 60, 220), box=(30, 30, 110, 110)))
    >>> [(f.cls, f.color, f.box) for f in perceive(render(doc)[0])]
    [('cup', 'blue', (30, 30, 110, 110))]

No document, no id buffer, no label text: what this module knows is what any
viewer of these sketches learns — the backdrop is row bands, outlines are drawn
in one ink, each silhouette's shape and each class mark's strokes (the glyph
templates, ``glyphs.glyph_template``). Perception, with its errors:

1. **Segment.** Per row, the backdrop is the colour the row's two ends agree on
   (else the row's commonest colour). Outline ink is its exact colour. Every
   other colour with enough pixels is some glyph's fill; its pixels joined
   through ink (a glyph's pieces are separated by its own outlines) are one
   candidate instance. Two touching glyphs of one colour read as one.
2. **Silhouette.** For each silhouette, the box it would have to fill to show
   these fill pixels (fitted to the fill's bounds; a cut side — frame edge or
   something on top — is extended by the silhouette's aspect); the template
   there is compared pixel by pixel with what is seen (colour where it says
   fill, ink where it says ink, pixels covered by other glyphs or off the frame
   left out). The best fit names the silhouette; a poor fit is a fragment
   (``cls=None``).
3. **Class mark.** Inside the silhouette's mark patch, the ink strokes seen are
   compared with each class's mark (F1 with a pixel of slack).
4. **Visibility.** Of the template's pixels, those seen (colour or ink) over all
   of them: the visible fraction; those inside the frame: the in-frame fraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from strokeagent.sketch.document import Box
from strokeagent.sketch.glyphs import (
    ASPECT,
    EMPTY,
    FILL,
    GLYPHS,
    INK,
    MARK,
    MARKS,
    classes_of_kind,
    glyph_template,
)
from strokeagent.sketch.palette import LABEL_HALO, OUTLINE, nearest_color

#: Fewer pixels of one colour than this are label anti-aliasing or crumbs, not a glyph.
MIN_PIXELS = 40
#: A silhouette fit below this names nothing: a fragment.
MIN_FIT = 0.55
#: Seen pixels (O): what each pixel in a hypothesised box shows.
_BG, _OWN, _INK, _OTHER, _OUT = 0, 1, 2, 3, 4
KINDS = tuple(k for k in GLYPHS if k != "generic")


@dataclass(frozen=True)
class Found:
    """One instance as the pixels show it."""

    cls: str | None  # None: a fragment no silhouette fits
    kind: str | None  # its silhouette (supercategory)
    box: Box  # bounding box of its visible pixels
    glyph_box: Box  # where the whole glyph is estimated to lie (may reach past the frame)
    color: str  # nearest named colour of its fill
    rgb: tuple[int, int, int]
    fit: float  # silhouette fit, 0..1
    mark_fit: float  # class-mark fit, 0..1
    visible_fraction: float
    inframe_fraction: float

    @property
    def occluded_fraction(self) -> float:
        return max(0.0, self.inframe_fraction - self.visible_fraction)

    @property
    def counts(self) -> bool:
        """Whether a viewer would count it: it is recognised and half of it shows."""
        return self.cls is not None and self.visible_fraction >= 0.5


def _backdrop(px: np.ndarray) -> np.ndarray:
    """Per row, the packed rgb of the backdrop."""
    left, right = px[:, 0], px[:, -1]
    bg = left.copy()
    for y in np.nonzero(left != right)[0]:
        values, counts = np.unique(px[y], return_counts=True)
        bg[y] = values[counts.argmax()]
    return bg


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of ``mask``: (labels 1..n, 0 elsewhere; n). Row runs joined by union-find."""
    h, _ = mask.shape
    padded = np.zeros((h, mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    diff = np.diff(padded, axis=1)
    parent: list[int] = []
    runs: list[tuple[int, int, int]] = []  # y, x0, x1 (exclusive)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    prev: list[tuple[int, int, int]] = []  # x0, x1, run id of the row above
    for y in range(h):
        starts = np.nonzero(diff[y] == 1)[0]
        ends = np.nonzero(diff[y] == -1)[0]
        cur = []
        j = 0
        for x0, x1 in zip(starts.tolist(), ends.tolist(), strict=True):
            rid = len(runs)
            runs.append((y, x0, x1))
            parent.append(rid)
            while j < len(prev) and prev[j][1] <= x0:
                j += 1
            k = j
            while k < len(prev) and prev[k][0] < x1:
                a, b = find(rid), find(prev[k][2])
                if a != b:
                    parent[max(a, b)] = min(a, b)
                k += 1
            cur.append((x0, x1, rid))
        prev = cur
    labels = np.zeros(mask.shape, np.int32)
    roots: dict[int, int] = {}
    for rid, (y, x0, x1) in enumerate(runs):
        root = find(rid)
        labels[y, x0:x1] = roots.setdefault(root, len(roots) + 1)
    return labels, len(roots)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    if not len(xs):  # a template drawn too thin to hold any fill: its whole box
        return 0, 0, mask.shape[1], mask.shape[0]
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@lru_cache(maxsize=8192)
def _fill_bounds(kind: str, w: int, h: int) -> tuple[int, int, int, int]:
    t = glyph_template(kind, w, h)
    return _bbox((t == FILL) | (t == MARK))


def _fit_box(kind: str, fill: tuple[int, int, int, int]) -> Box | None:
    """The box whose ``kind`` template has its fill bounds at ``fill`` (two refinements)."""
    fx0, fy0, fx1, fy1 = fill
    w, h = max(8, round((fx1 - fx0) * 1.1)), max(8, round((fy1 - fy0) * 1.1))
    for _ in range(3):
        a0, b0, a1, b1 = _fill_bounds(kind, w, h)
        nw = max(8, round(w * (fx1 - fx0) / max(1, a1 - a0)))
        nh = max(8, round(h * (fy1 - fy0) / max(1, b1 - b0)))
        if (nw, nh) == (w, h):
            break
        w, h = nw, nh
        if w > 4096 or h > 4096:
            return None
    a0, b0, _, _ = _fill_bounds(kind, w, h)
    return (fx0 - a0, fy0 - b0, fx0 - a0 + w, fy0 - b0 + h)


def _seen(own: np.ndarray, ink: np.ndarray, other: np.ndarray, box: Box) -> np.ndarray:
    """What each pixel of ``box`` shows (``_OWN``, ``_INK``, ``_OTHER``, ``_BG``, ``_OUT`` past the frame)."""
    x0, y0, x1, y1 = box
    H, W = own.shape
    out = np.full((y1 - y0, x1 - x0), _OUT, np.uint8)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if cx1 <= cx0 or cy1 <= cy0:
        return out
    sl = (slice(cy0, cy1), slice(cx0, cx1))
    win = np.full((cy1 - cy0, cx1 - cx0), _BG, np.uint8)
    win[other[sl]] = _OTHER
    win[ink[sl]] = _INK
    win[own[sl]] = _OWN
    out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = win
    return out


def _score(t: np.ndarray, o: np.ndarray, own_total: int) -> float:
    match = (
        ((t == FILL) & (o == _OWN)) | ((t == INK) & (o == _INK)) | ((t == MARK) & ((o == _OWN) | (o == _INK)))
    )
    observable = (t != EMPTY) & (o != _OTHER) & (o != _OUT)
    own_inside = int((o == _OWN).sum())
    stray = int(((t == EMPTY) & (o == _OWN)).sum()) + (own_total - own_inside)
    denom = int(observable.sum()) + stray
    return float(match.sum()) / denom if denom else 0.0


def _grow(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _mark_fit(kind: str, box: Box, o: np.ndarray) -> tuple[int, float]:
    w, h = box[2] - box[0], box[3] - box[1]
    patch = glyph_template(kind, w, h) == MARK
    seen_ink = (o == _INK) & patch
    seen = ((o == _OWN) | (o == _INK)) & patch
    grown_seen = _grow(seen_ink)
    n = len(classes_of_kind(kind)) or len(MARKS)
    best, best_f1 = 0, -1.0
    for m in range(n):
        strokes = (glyph_template(kind, w, h, m) == INK) & patch
        visible = strokes & seen
        if not visible.any():
            continue
        recall = float((visible & grown_seen).sum()) / visible.sum()
        precision = float((seen_ink & _grow(strokes)).sum()) / max(1, seen_ink.sum())
        f1 = 2 * precision * recall / max(1e-9, precision + recall)
        if f1 > best_f1 + 1e-9:
            best, best_f1 = m, f1
    return best, max(best_f1, 0.0)


def _hypotheses(kind: str, fill: tuple[int, int, int, int], cut: dict[str, bool]) -> list[Box]:
    box = _fit_box(kind, fill)
    if box is None:
        return []
    out = [box]
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    aspect = ASPECT[kind]
    if w < aspect * h * 0.92:  # cut left or right: extend to the silhouette's width
        nw = round(aspect * h)
        sides = [s for s in ("left", "right") if cut[s]] or ["left", "right"]
        out += [(x1 - nw, y0, x1, y1) if s == "left" else (x0, y0, x0 + nw, y1) for s in sides]
    elif h < w / aspect * 0.92:
        nh = round(w / aspect)
        sides = [s for s in ("top", "bottom") if cut[s]] or ["top", "bottom"]
        out += [(x0, y1 - nh, x1, y1) if s == "top" else (x0, y0, x1, y0 + nh) for s in sides]
    return out


def perceive(image: Image.Image) -> list[Found]:
    """Every instance the pixels of ``image`` show, largest first."""
    px3 = np.asarray(image.convert("RGB"), dtype=np.int32)
    px = (px3[..., 0] << 16) | (px3[..., 1] << 8) | px3[..., 2]
    H, W = px.shape
    outline = (OUTLINE[0] << 16) | (OUTLINE[1] << 8) | OUTLINE[2]
    halo = (LABEL_HALO[0] << 16) | (LABEL_HALO[1] << 8) | LABEL_HALO[2]
    ink = px == outline
    painted = (px != _backdrop(px)[:, None]) & ~ink
    values, counts = np.unique(px[painted], return_counts=True)
    colours = [int(v) for v, c in zip(values, counts, strict=True) if c >= MIN_PIXELS and v != halo]
    candidates: list[tuple[np.ndarray, int]] = []
    for c in colours:
        own_all = px == c
        x0, y0, x1, y1 = _bbox(own_all)
        x0, y0, x1, y1 = max(0, x0 - 12), max(0, y0 - 12), min(W, x1 + 12), min(H, y1 + 12)
        crop_own = own_all[y0:y1, x0:x1]
        labels, n = _components(crop_own | ink[y0:y1, x0:x1])
        for k in range(1, n + 1):
            part = (labels == k) & crop_own
            # A glyph is outlined in ink; an unoutlined patch (the night's moon) is backdrop.
            if part.sum() >= MIN_PIXELS and (labels == k)[~crop_own].any():
                mask = np.zeros_like(own_all)
                mask[y0:y1, x0:x1] = part
                candidates.append((mask, c))
    candidates.sort(key=lambda mc: -int(mc[0].sum()))
    found: list[Found] = []
    for mask, c in candidates:
        box = _bbox(mask)
        # A crumb of a colour inside a recognised glyph of that colour is part of it (a detached piece).
        if any(f.cls is not None and f.rgb == _unpack(c) and _inside(box, f.glyph_box) for f in found):
            continue
        found.append(_recognise(mask, c, ink, painted))
    return sorted(found, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def _unpack(c: int) -> tuple[int, int, int]:
    return ((c >> 16) & 255, (c >> 8) & 255, c & 255)


def _inside(a: Box, b: Box) -> bool:
    return a[0] >= b[0] - 2 and a[1] >= b[1] - 2 and a[2] <= b[2] + 2 and a[3] <= b[3] + 2


def _recognise(own: np.ndarray, c: int, ink: np.ndarray, painted: np.ndarray) -> Found:
    H, W = own.shape
    fill = _bbox(own)
    other = painted & ~own
    own_total = int(own.sum())
    fx0, fy0, fx1, fy1 = fill
    # A side is cut when the frame or another glyph's colour borders the fill there.
    pad = 3

    def borders(sl: tuple[slice, slice]) -> bool:
        return bool(other[sl].any())

    cut = {
        "left": fx0 <= pad or borders((slice(fy0, fy1), slice(max(0, fx0 - pad - 3), fx0))),
        "right": fx1 >= W - pad or borders((slice(fy0, fy1), slice(fx1, min(W, fx1 + pad + 3)))),
        "top": fy0 <= pad or borders((slice(max(0, fy0 - pad - 3), fy0), slice(fx0, fx1))),
        "bottom": fy1 >= H - pad or borders((slice(fy1, min(H, fy1 + pad + 3)), slice(fx0, fx1))),
    }
    best: tuple[float, str, Box, np.ndarray] | None = None
    for kind in KINDS:
        for box in _hypotheses(kind, fill, cut):
            w, h = box[2] - box[0], box[3] - box[1]
            o = _seen(own, ink, other, box)
            s = _score(glyph_template(kind, w, h), o, own_total)
            if best is None or s > best[0] + 1e-9:
                best = (s, kind, box, o)
    rgb = _unpack(c)
    color = nearest_color(rgb)
    if best is None:
        return Found(None, None, fill, fill, color, rgb, 0.0, 0.0, 0.0, 0.0)
    fit, kind, box, o = best
    t = glyph_template(kind, box[2] - box[0], box[3] - box[1])
    area = int((t != EMPTY).sum())
    shown = (t != EMPTY) & ((o == _OWN) | (o == _INK))
    visible = float(shown.sum()) / area if area else 0.0
    inframe = float(((t != EMPTY) & (o != _OUT)).sum()) / area if area else 0.0
    if shown.any():
        ys, xs = np.nonzero(shown)
        vbox = (
            box[0] + int(xs.min()),
            box[1] + int(ys.min()),
            box[0] + int(xs.max()) + 1,
            box[1] + int(ys.max()) + 1,
        )
    else:
        vbox = fill
    if fit < MIN_FIT:
        return Found(None, kind, vbox, box, color, rgb, fit, 0.0, visible, inframe)
    mark, mark_fit = _mark_fit(kind, box, o)
    classes = classes_of_kind(kind)
    cls = classes[mark] if mark < len(classes) else None
    return Found(cls, kind, vbox, box, color, rgb, fit, mark_fit, visible, inframe)
