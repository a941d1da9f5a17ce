"""Process trajectories of the stroke world, as token sequences for ``process-tiny`` to learn from.

    >>> seq = trajectory("a photo of a dog left of a cup", mode="full", seed=0)
    >>> seq.text(loss=True)[:39]                      # what the model writes first: the plan of step 1
    '<ins>Draw a cup.</ins><des>A cup.</des>'

One sample is what the ``process`` stages and the model would put in one
context, in that order — the prompt, each step's ``<ins>``/``<des>`` plan, the
strokes of each pass (a *branch*: later positions do not see them, as the
model paints in a fork), the rendered canvas (16 patches), the inspection and
``<refine>`` — with a loss on exactly what the model writes and none on what the
stages add (the prompt, ``<inspect>``) or on the canvas.

The teacher is the stroke world itself: the plan is the scene graph's
increments (``scene.plan_increments``), the strokes put every instance in a
cell by one fixed rule (``cells_of``), the hand paints them with its seeded
mistakes (``sketch.hand``), and the inspection says what the *document* shows
went wrong — a dropped, moved, hidden or recoloured instance. The model gets
only the pixels of that canvas: to write the same inspection it must see it.

Four modes, one per stage order the model is asked to run (its ablation):
``full`` (plan, draft, reflect, refine), ``plan_draft``, ``draft_reflect_refine``
(the whole prompt in one pass, then inspections) and ``one_shot``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from strokeagent.scene.geometry import holds
from strokeagent.scene.graph import SceneGraph
from strokeagent.scene.increments import Increment, noun_phrase
from strokeagent.sketch.document import SketchDocument
from strokeagent.sketch.glyphs import render
from strokeagent.sketch.hand import SIZE, Stroke, cell_box, paint
from strokeagent.sketch.measure import inspect
from strokeagent.sketch.palette import nearest_color
from strokeagent.sketch.scenes import increments_of_prompt, scene_of_prompt
from strokeagent.unified.process import ProcessFormat
from strokeagent.unified.tiny import PATCH_DIM, Tokenizer, pooled_cells, write_strokes

Mode = Literal["full", "plan_draft", "draft_reflect_refine", "one_shot"]
MODES: tuple[Mode, ...] = ("full", "plan_draft", "draft_reflect_refine", "one_shot")
#: The format process-tiny is trained on and run with: the paper's tags, no preamble (it has learned them).
FORMAT = ProcessFormat(preamble="")
MAX_REFINES = 2
#: The cells tried for each instance, best first: the middle rows, centre outwards.
PREFERENCE = [(c, r) for r in (1, 2, 0, 3) for c in (1, 2, 0, 3)]
#: Under this share of its pixels in view, an instance counts as hidden.
MIN_VISIBLE = 0.6


@dataclass
class Sequence:
    """Token pieces in order: ``("text", str, loss)``, ``("branch", strokes_text, loss)``, ``("image", patches)``."""

    pieces: list[tuple] = field(default_factory=list)
    final: SketchDocument | None = None

    def text(self, loss: bool | None = None) -> str:
        return "".join(p[1] for p in self.pieces if p[0] == "text" and (loss is None or p[2] == loss))

    def add(self, kind: str, value: object, loss: bool = False) -> None:
        self.pieces.append((kind, value, loss))


def cells_of(graph: SceneGraph, increments: list[Increment]) -> dict[str, list[tuple[int, int]]]:
    """The cell of every instance: objects in increment order, each instance in the first free cell of
    ``PREFERENCE`` that keeps its relations to what is placed already (else the first free cell)."""
    placed: dict[str, list[tuple[int, int]]] = {}
    taken: set[tuple[int, int]] = set()
    order = [oid for inc in increments for oid in inc.object_ids]
    order += [o.id for o in graph.objects if o.id not in order]
    for oid in order:
        obj = graph.object(oid)
        cells = []
        for _ in range(obj.count):
            free = [c for c in PREFERENCE if c not in taken] or PREFERENCE
            good = [c for c in free if _keeps(graph, oid, c, placed)]
            cell = (good or free)[0]
            cells.append(cell)
            taken.add(cell)
        placed[oid] = cells
    return placed


def _keeps(graph: SceneGraph, oid: str, cell: tuple[int, int], placed: dict[str, list[tuple[int, int]]]) -> bool:
    box = cell_box(*cell)
    for rel in graph.relations:
        if rel.subject == oid and rel.object in placed:
            pairs = [(box, cell_box(*c)) for c in placed[rel.object]]
        elif rel.object == oid and rel.subject in placed:
            pairs = [(cell_box(*c), box) for c in placed[rel.subject]]
        else:
            continue
        if not all(holds(rel.predicate, a, b) for a, b in pairs):
            return False
    return True


def strokes_for(graph: SceneGraph, ids: list[str], cells: dict[str, list[tuple[int, int]]]) -> list[Stroke]:
    out = []
    for oid in ids:
        obj = graph.object(oid)
        if obj.known:
            out += [Stroke(obj.cls, obj.color, c, r) for c, r in cells[oid]]
    return out


def wrong_strokes(doc: SketchDocument, wanted: list[Stroke]) -> list[Stroke]:
    """The strokes the canvas does not show as asked: missing, moved, hidden, or (if a colour was asked) recoloured."""
    seen = {s.object_id: s for s in inspect(render(doc)[0], doc)}
    by_key = {d.object_id: d for d in doc.instances}
    wrong = []
    for s in wanted:
        d = by_key.get(s.key)
        if (
            d is None
            or d.box != cell_box(s.col, s.row)
            or seen[s.key].visible_fraction < MIN_VISIBLE
            or (s.color and nearest_color(d.rgb) != s.color)
        ):
            wrong.append(s)
    return wrong


def _phrase(graph: SceneGraph, strokes: list[Stroke]) -> str:
    """The instances of ``strokes``, named as in a plan: "the red apple", "two apples and the dog"."""
    names = []
    for obj in graph.objects:
        n = sum(1 for s in strokes if s.cls == obj.cls and s.color == obj.color)
        if n:
            one = noun_phrase(obj.model_copy(update={"count": n}))
            names.append("the " + one.split(" ", 1)[1] if n == obj.count == 1 else one)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def trajectory(
    prompt: str, mode: Mode, seed: int, mistake_rate: float = 0.25, crowding: float = 0.25, max_steps: int = 5
) -> Sequence:
    """One sample: ``prompt`` run in ``mode`` by the teacher, the hand's mistakes drawn from ``seed``."""
    fmt = FORMAT
    graph = scene_of_prompt(prompt)
    increments = list(increments_of_prompt(prompt, max_steps))
    cells = cells_of(graph, increments)
    rng = np.random.default_rng(seed)
    seq = Sequence()
    seq.add("text", "<bos>")
    seq.add("text", fmt.header(prompt).strip())
    doc = SketchDocument(size=SIZE)

    def draw(strokes: list[Stroke]) -> None:
        nonlocal doc
        seq.add("branch", write_strokes(strokes) + "</draw>", True)
        doc = paint(doc, strokes, rng, mistake_rate, crowding)
        image, _ = render(doc)
        seq.add("image", pooled_cells(image))

    def inspect_and_fix(wanted: list[Stroke]) -> None:
        for attempt in range(MAX_REFINES + 1):
            seq.add("text", fmt.inspect[0])
            wrong = wrong_strokes(doc, wanted)
            conflict = f"{_phrase(graph, wrong)} {'is' if len(wrong) == 1 else 'are'} wrong" if wrong else ""
            seq.add("text", fmt.write_inspection([], [conflict] if conflict else []), True)
            if not wrong:
                return
            seq.add("text", fmt.write_refine(f"Redraw {_phrase(graph, wrong)}."), True)
            if attempt < MAX_REFINES:
                draw(wrong)

    if mode in ("one_shot", "draft_reflect_refine") or not increments:
        wanted = strokes_for(graph, [o.id for o in graph.objects], cells)
        draw(wanted)
        if mode == "draft_reflect_refine":
            inspect_and_fix(wanted)
            seq.add("text", fmt.close, True)
    else:
        wanted = []
        for k, inc in enumerate(increments):
            plan = fmt.write_plan(inc.instruction, inc.description)
            continued = k > 0 and mode == "full" and seq.pieces[-1][1] == fmt.ins[0]
            seq.add("text", plan.removeprefix(fmt.ins[0]) if continued else plan, True)
            new = strokes_for(graph, list(inc.object_ids), cells)
            wanted += new
            draw(new)
            if mode == "full":
                inspect_and_fix(wanted)
                last = k == len(increments) - 1
                passed = seq.pieces[-1][1].endswith(fmt.inspect[1])
                if passed:
                    seq.add("text", fmt.close if last else fmt.ins[0], True)
                elif last:  # the refines ran out: the next plan closes
                    seq.add("text", fmt.close, True)
        if mode == "plan_draft":
            seq.add("text", fmt.close, True)
    seq.final = doc
    return seq



def encode(seq: Sequence, tok: Tokenizer) -> dict[str, np.ndarray]:
    """``seq`` as arrays: ``ids``, ``pos`` (positions; a branch's come after its prefix, and the canvas
    after it takes the branch's first), ``branch`` (0, or the branch a token belongs to: only that
    branch sees it), ``target`` (the token the model must write next, -1 where it writes nothing) and
    ``patches`` (one row of pooled pixels, bytes, per ``<patch>``)."""
    ids: list[int] = []
    pos: list[int] = []
    branch: list[int] = []
    target: list[int] = []
    patches: list[np.ndarray] = []
    main_pos, last_main, branches = 0, -1, 0

    def put(token: int, b: int, p: int, loss: bool, before: int) -> int:
        if loss and before >= 0:
            target[before] = token
        ids.append(token)
        pos.append(p)
        branch.append(b)
        target.append(-1)
        return len(ids) - 1

    for kind, value, loss in seq.pieces:
        if kind == "text":
            for token in tok.encode(value):
                last_main = put(token, 0, main_pos, loss, last_main)
                main_pos += 1
        elif kind == "branch":
            branches += 1
            before = put(tok.id("<draw>"), branches, main_pos, False, -1)
            for k, token in enumerate(tok.encode(value)):
                before = put(token, branches, main_pos + 1 + k, loss, before)
        else:
            for token in [tok.id("<img>"), *[tok.id("<patch>")] * len(value), tok.id("</img>")]:
                last_main = put(token, 0, main_pos, False, last_main)
                main_pos += 1
            patches.append(value)
    return {
        "ids": np.array(ids, np.int32),
        "pos": np.array(pos, np.int32),
        "branch": np.array(branch, np.int32),
        "target": np.array(target, np.int32),
        "patches": np.concatenate(patches) if patches else np.zeros((0, PATCH_DIM), np.uint8),
    }
