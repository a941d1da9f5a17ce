"""Build the three subsets from a suite of prompts into sharded, resumable, ``datasets``-readable files.

    >>> manifest = build_dataset("geneval:8", "data/process", seed=0)          # doctest: +SKIP
    >>> load_samples("data/process")[0]["subset"]                            # doctest: +SKIP
    'multi_turn'

Suite items are processed in order, ``shard_size`` at a time; a shard is written
(to a temporary name, then renamed) only when all its items are done, and its
images before it. Building again into the same folder skips finished shards,
so a killed build resumes where it stopped, with the same bytes: every random
choice comes from a seed derived from (seed, item, subset). The folder format
is in docs/data-format.md.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from strokeagent.core.stages import stage_seed
from strokeagent.core.store import ArtifactStore, atomic_write, new_output_folder
from strokeagent.data import alignment, text
from strokeagent.data.multiturn import Step, multi_turn_steps
from strokeagent.errors import DataError, StrokeAgentError
from strokeagent.scene import SuiteItem, generate_suite, graph_from_item, load_suite
from strokeagent.sketch.glyphs import render
from strokeagent.unified.process import ProcessFormat

FORMAT = "strokeagent-process"
#: Bumped when the same options would write other samples (2: an alignment sample before the last step ends
#: with the next step's opener); a folder begun by another version is not resumed.
VERSION = 2
SUBSETS = ("multi_turn", "conflict", "alignment")
#: The options that decide the bytes; a resumed build must be given the same.
_KEYS = (
    "suite",
    "policy",
    "seed",
    "subsets",
    "shard_size",
    "size",
    "edit_rate",
    "items",
    "editor",
    "editor_steps",
)


def read_suite(suite: str | Path, seed: int = 0) -> list[SuiteItem]:
    """A GenEval-format JSONL file, or ``geneval:N`` for N generated rows in GenEval's proportions."""
    name = str(suite)
    if name.startswith("geneval:"):
        try:
            n = int(name.split(":", 1)[1])
        except ValueError:
            raise DataError(
                f"suite {name!r}: write geneval:N with a whole number N, e.g. geneval:553"
            ) from None
        if n < 1:
            raise DataError(f"suite {name!r}: N must be at least 1")
        return generate_suite(n, seed=seed)
    path = Path(suite)
    if not path.is_file():
        raise DataError(f"no suite file {path}; give a GenEval metadata JSONL file or geneval:N")
    try:
        return load_suite(path)
    except ValueError as e:
        raise DataError(str(e)) from None


class _Writer:
    """Images into the folder's content-addressed store; segment paths relative to the folder."""

    def __init__(self, root: Path) -> None:
        self.store = ArtifactStore(root / "images")

    def put(self, doc: Any) -> str:
        ref = self.store.put(render(doc)[0] if not hasattr(doc, "mode") else doc)
        return f"images/{ref.sha256}.png"


def multi_turn_sample(
    item: SuiteItem, steps: list[Step], fmt: ProcessFormat, put: Callable, pictures: list[Any] | None = None
) -> dict[str, Any]:
    """Subset 1: plan, paint, plan, paint … then close; the model writes and paints everything.

    ``pictures`` are the steps' images when an editing model rendered them (else the stroke canvas).
    """
    segments = [text.text(fmt.header(item.prompt), False)]
    for k, step in enumerate(steps):
        segments.append(text.text(fmt.write_plan(step.instruction, step.description), True))
        segments.append(text.image(put(step.document if pictures is None else pictures[k]), True))
    segments.append(text.text(fmt.close, True))
    edits = sorted({s.edit for s in steps if s.edit})
    return {"segments": segments, "meta": {"steps": len(steps), "edits": edits}}


def edited_pictures(editor: Any, steps: list[Step], size: int, seed: int, num_steps: int) -> list[Any]:
    """Each step rendered by an instruction-editing model: the step's instruction applied to the
    previous picture, starting from a blank canvas (any backend that can ``edit``)."""
    import asyncio

    from PIL import Image

    from strokeagent.backends.image import ImageRequest

    picture, out = Image.new("RGB", (size, size), "white"), []
    for k, step in enumerate(steps):
        request = ImageRequest(prompt=step.instruction, image=picture, edit=True, width=size, height=size,
                               steps=num_steps, seed=stage_seed(seed, k, "edit"))  # fmt: skip
        picture = asyncio.run(editor.generate([request]))[0].convert("RGB")
        out.append(picture)
    return out


def alignment_sample(
    item: SuiteItem,
    graph: Any,
    steps: list[Step],
    fmt: ProcessFormat,
    put: Callable,
    rng: np.random.Generator,
) -> dict[str, Any] | None:
    """Subset 3: one step's canvas, aligned or perturbed, inspected; a misaligned one is corrected.

    The sample ends with the model's choice after its passed inspection: ``</process>`` on the last
    step, else the opener of the next step (``<ins>``).
    """
    candidates = [
        k for k in range(len(steps)) if steps[k].edit is None and alignment.applicable(graph, steps, k)
    ]
    if not candidates:
        return None
    k = candidates[int(rng.integers(len(candidates)))]
    step = steps[k]
    kinds = alignment.applicable(graph, steps, k)
    kind = kinds[int(rng.integers(len(kinds)))] if rng.random() < 0.5 else None
    doc = step.document
    if kind is not None:
        doc, kind = alignment.perturb(graph, steps, k, kind, rng)
    violations = alignment.measure(graph, steps, k, doc)
    segments = [
        text.text(fmt.header(item.prompt), False),
        text.text(fmt.write_plan(step.instruction, step.description), False),
        text.image(put(doc), False),
        text.text(fmt.inspect[0], False),
        text.text(fmt.write_inspection([], [v["text"] for v in violations]), True),
    ]
    if violations:
        from strokeagent.sketch.reflector import corrected_instruction

        segments += [
            text.text(fmt.write_refine(corrected_instruction(violations, graph)), True),
            text.image(put(step.document), True),
            text.text(fmt.inspect[0], False),
            text.text(fmt.write_inspection([], []), True),
        ]
    # After its last inspection the model closes on the last step, else opens the next (what ProcessStages reads).
    segments.append(text.text(fmt.close if k == len(steps) - 1 else fmt.ins[0], True))
    label = "misaligned" if violations else "aligned"
    return {"segments": segments, "meta": {"step": k, "perturbation": kind, "label": label}}


def conflict_sample(
    item: SuiteItem,
    policy: Any,
    seed: int,
    fmt: ProcessFormat,
    put: Callable,
    scratch: Path,
    right: Any = None,
) -> dict[str, Any]:
    """Subset 2: a trajectory self-sampled from ``policy``, judged against the whole prompt.

    The last plan and canvas are the context; the model learns the inspection
    (the judge's verdict, the reflector's measured conflicts) and, for a
    negative, the corrected instruction, then paints ``right`` (the scene drawn
    right) and passes its inspection; both labels end with ``</process>``.
    """
    from strokeagent.core.stages import Canvas
    from strokeagent.critics.ground_truth import truth
    from strokeagent.runs.api import generate
    from strokeagent.scene.graph import SceneGraph
    from strokeagent.sketch.document import SketchDocument
    from strokeagent.sketch.measure import check_document, inspect
    from strokeagent.sketch.reflector import corrected_instruction
    from strokeagent.sketch.scenes import scene_of_prompt

    out = scratch / f"run-{seed}"
    try:
        traj = generate(item.prompt, policy, seed=seed, out=out)
        ref = traj.final_image
        image = traj.open_image(ref) if ref is not None else None
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if ref is None or "sketch" not in ref.meta:
        raise DataError(
            f"policy {traj.policy!r} did not leave a stroke canvas; the conflict subset judges sketch canvases, "
            "so give a policy whose drafter is sketch.draft (e.g. ablations/one_shot)"
        )
    doc = SketchDocument.from_meta(ref.meta)
    # Labels come from the answer key (what the renderer drew), not from the pixel judge.
    passed, reasons = truth(item, Canvas(image, dict(ref.meta)))
    graph: SceneGraph = scene_of_prompt(item.prompt)
    violations = check_document(graph, [o.id for o in graph.objects], doc, inspect(image, doc))
    plan = traj.steps[-1].plan if traj.steps and traj.steps[-1].plan else None
    instruction = plan.instruction if plan else item.prompt
    description = plan.description if plan and plan.description else item.prompt
    conflicts = [] if passed else ([v["text"] for v in violations] or reasons)
    segments = [
        text.text(fmt.header(item.prompt), False),
        text.text(fmt.write_plan(instruction, description), False),
        text.image(put(image), False),
        text.text(fmt.inspect[0], False),
        text.text(fmt.write_inspection([], conflicts), True),
    ]
    if not passed:
        fix = corrected_instruction(violations, graph) or f"Follow the prompt: {item.prompt}."
        segments.append(text.text(fmt.write_refine(fix), True))
        if right is not None:  # the scene drawn right (the clean build's last canvas), painted anew
            segments += [
                text.image(put(right), True),
                text.text(fmt.inspect[0], False),
                text.text(fmt.write_inspection([], []), True),
            ]
    if passed or right is not None:
        segments.append(text.text(fmt.close, True))  # the picture is complete: the model closes
    meta = {"label": "positive" if passed else "negative", "judge": reasons, "policy": traj.policy}
    return {"segments": segments, "meta": meta}


def _item_samples(
    index: int,
    item: SuiteItem,
    opts: dict[str, Any],
    policy: Any,
    put: Callable,
    scratch: Path,
    editor: Any = None,
) -> list[dict[str, Any]]:
    fmt = ProcessFormat()
    seed = opts["seed"]
    graph = graph_from_item(item)
    steps = multi_turn_steps(
        graph,
        np.random.default_rng(stage_seed(seed, index, "multi_turn")),
        size=opts["size"],
        seed=stage_seed(seed, index, "layout"),
        edit_rate=opts["edit_rate"],
    )
    samples = []
    if "multi_turn" in opts["subsets"] and steps:
        pictures = None
        if editor is not None:
            editor_seed = stage_seed(seed, index, "editor")
            pictures = edited_pictures(editor, steps, opts["size"], editor_seed, opts["editor_steps"])
        samples.append(("multi_turn", multi_turn_sample(item, steps, fmt, put, pictures)))
    clean = multi_turn_steps(graph, np.random.default_rng(0), size=opts["size"],
                             seed=stage_seed(seed, index, "layout"), edit_rate=0.0)  # fmt: skip
    if "conflict" in opts["subsets"]:
        run_seed = stage_seed(seed, index, "conflict") % 2**31
        right = clean[-1].document if clean else None
        samples.append(("conflict", conflict_sample(item, policy, run_seed, fmt, put, scratch, right)))
    if "alignment" in opts["subsets"]:
        rng = np.random.default_rng(stage_seed(seed, index, "alignment"))
        sample = alignment_sample(item, graph, clean, fmt, put, rng)
        if sample is not None:
            samples.append(("alignment", sample))
    return [
        {
            "id": f"{index:06d}-{subset}",
            "subset": subset,
            "prompt": item.prompt,
            "tag": item.tag,
            "segments": s["segments"],
            "meta": json.dumps(s["meta"]),
        }
        for subset, s in samples
    ]


def _conflict_policy(policy: str | Path, size: int) -> Any:
    """The self-sampling policy, its sketch canvases drawn at ``size`` like the other subsets."""
    from strokeagent.core.policy import policy_from_tables, read_policy_tables, resolve_policy_path

    path = resolve_policy_path(policy)
    tables = read_policy_tables(path)
    for table in (tables.get("stages") or {}).values():
        if isinstance(table, dict) and table.get("kind") in ("sketch.draft", "sketch.refine"):
            table["size"] = size
    return policy_from_tables(tables, where=str(path), default_name=path.stem)


def build_dataset(
    suite: str | Path,
    out: str | Path,
    *,
    policy: str | Path = "ablations/one_shot",
    seed: int = 0,
    limit: int | None = None,
    subsets: Sequence[str] = SUBSETS,
    shard_size: int = 64,
    size: int = 256,
    edit_rate: float = 0.3,
    editor: str | Path | None = None,
    editor_steps: int = 30,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Build (or finish building) the data set in ``out``; return its manifest. See the module docstring."""
    unknown = [s for s in subsets if s not in SUBSETS]
    if unknown or not subsets:
        raise DataError(
            f"unknown subset {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(SUBSETS)}"
        )
    if shard_size < 1 or editor_steps < 1 or size < 64 or not 0 <= edit_rate <= 1:
        raise DataError(
            "shard_size and editor_steps must be at least 1, size at least 64 px and edit_rate between 0 and 1"
        )
    items = read_suite(suite, seed)[: limit if limit is not None else None]
    if not items:
        raise DataError(f"suite {suite} has no rows")
    root = Path(out)
    opts = {"suite": str(suite), "policy": str(policy), "seed": seed, "subsets": [s for s in SUBSETS if s in subsets],
            "shard_size": shard_size, "size": size, "edit_rate": edit_rate, "items": len(items),
            "editor": None if editor is None else str(editor), "editor_steps": editor_steps}  # fmt: skip
    manifest = _open_manifest(root, opts)
    conflict_policy = None
    if "conflict" in opts["subsets"]:
        try:
            conflict_policy = _conflict_policy(policy, size)
        except StrokeAgentError as e:
            raise DataError(f"cannot build the self-sampling policy: {e}") from None
    editor_backend = _editor(editor) if editor is not None else None
    writer = _Writer(root)
    n_shards = (len(items) + shard_size - 1) // shard_size
    done_items = sum(
        min(shard_size, len(items) - i * shard_size) for i in range(n_shards) if _shard(root, i).is_file()
    )
    if progress:
        progress(done_items, len(items))
    with tempfile.TemporaryDirectory(prefix=".runs-", dir=root) as scratch:
        for shard in range(n_shards):
            path = _shard(root, shard)
            if path.is_file():
                continue
            rows, counts = [], {s: 0 for s in opts["subsets"]}
            for index in range(shard * shard_size, min(len(items), (shard + 1) * shard_size)):
                for row in _item_samples(
                    index, items[index], opts, conflict_policy, writer.put, Path(scratch), editor_backend
                ):
                    rows.append(json.dumps(row) + "\n")
                    counts[row["subset"]] += 1
                done_items += 1
                if progress:
                    progress(done_items, len(items))
            atomic_write(path, "".join(rows))
            manifest["shards"][path.name] = {"samples": len(rows), "by_subset": counts}
            _write_manifest(root, manifest)
    manifest["complete"] = True
    manifest["samples"] = sum(s["samples"] for s in manifest["shards"].values())
    _write_manifest(root, manifest)
    return manifest


def _editor(ref: str | Path) -> Any:
    """The image backend that renders multi-turn steps; it must be able to edit."""
    from strokeagent.backends import load_backend
    from strokeagent.backends.image import require_task

    try:
        backend = load_backend(ref)
        require_task(backend, "edit", str(ref))
    except (StrokeAgentError, ValueError) as e:
        raise DataError(f"cannot use the editor {ref}: {e}") from None
    return backend


def _shard(root: Path, i: int) -> Path:
    return root / "data" / f"shard-{i:05d}.jsonl"


def _open_manifest(root: Path, opts: dict[str, Any]) -> dict[str, Any]:
    path = root / "manifest.json"
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise DataError(f"{path} is damaged (not JSON); remove the folder and build again") from None
        if manifest.get("format") != FORMAT:
            raise DataError(f"{root} holds something else than a strokeagent data set; choose another --out")
        if manifest.get("version") != VERSION:
            raise DataError(
                f"{root} was begun by data format version {manifest.get('version')}, this is version {VERSION}; "
                "choose another --out, or remove the folder and build again"
            )
        differ = [k for k in _KEYS if manifest.get("options", {}).get(k) != opts[k]]
        if differ:
            k = differ[0]
            raise DataError(
                f"{root} was built with {k} = {manifest['options'].get(k)!r}, now {opts[k]!r}; "
                "resume with the same options, or choose another --out"
            )
        return manifest
    with new_output_folder(
        root, what="data", taken="is not a data set; choose another --out", error=DataError
    ):
        (root / "data").mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "version": VERSION, "options": opts, "shards": {}, "complete": False}
    _write_manifest(root, manifest)
    return manifest


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    atomic_write(root / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def load_samples(root: str | Path):  # -> datasets.Dataset
    """The finished shards of ``root`` as one Hugging Face ``datasets.Dataset`` (the ``json`` loader)."""
    import datasets

    root = Path(root)
    if not (root / "manifest.json").is_file():
        raise DataError(
            f"{root} is not a strokeagent data set (no manifest.json); build one with `strokeagent data build`"
        )
    files = sorted(str(p) for p in (root / "data").glob("shard-*.jsonl"))
    if not files:
        raise DataError(
            f"{root} has no finished shard yet; build (or resume) it with `strokeagent data build`"
        )
    # The cache lives beside the shards, so a data set folder is self-contained and removable as one.
    return datasets.load_dataset("json", data_files=files, split="train", cache_dir=str(root / ".cache"))
