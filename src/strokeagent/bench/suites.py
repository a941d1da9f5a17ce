"""Bench suites: GenEval metadata files, generated GenEval-style suites, T2I-CompBench-style prompt lists.

    >>> [item.tag for item in load_bench_suite("geneval:6:0")]
    ['single_object', 'two_object', 'counting', 'colors', 'position', 'color_attr']

A suite is named by one string:

* ``PATH.jsonl`` — GenEval's metadata format (``tag``, ``include``, ``exclude``,
  ``prompt``); GenEval's own ``evaluation_metadata.jsonl`` runs unchanged;
* ``geneval:N`` or ``geneval:N:SEED`` — N rows generated from GenEval's grammar in
  its category proportions (seed 0 by default);
* ``PATH.txt`` — one prompt per line, T2I-CompBench style: the category is the
  file name without its split (``color_val.txt`` → ``color``); rows have no
  clauses, so critics judge the prompt as they read it;
* a folder — every ``*.jsonl`` and ``*.txt`` in it, in name order.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from strokeagent.errors import BenchError
from strokeagent.scene.geneval import SuiteItem, generate_suite, load_suite

#: T2I-CompBench's categories (Huang et al., 2023), by the stem its prompt files use.
COMPBENCH_CATEGORIES: dict[str, str] = {
    "color": "attribute binding: colour",
    "shape": "attribute binding: shape",
    "texture": "attribute binding: texture",
    "spatial": "2D spatial relations",
    "3d_spatial": "3D spatial relations",
    "non_spatial": "non-spatial relations",
    "numeracy": "counting",
    "complex": "complex compositions",
}
_GENERATED = re.compile(r"^geneval:(\d+)(?::(-?\d+))?$")


def compbench_category(path: Path) -> str:
    """``color_val.txt`` → ``color``; ``3d_spatial_train.txt`` → ``3d_spatial``; others: the stem."""
    return re.sub(r"_(val|train|test)$", "", path.stem)


def load_prompt_list(path: Path) -> list[SuiteItem]:
    """One row per non-blank line; the tag is the file's category."""
    tag = compbench_category(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    return [SuiteItem(tag=tag, include=[], prompt=line.strip()) for line in lines if line.strip()]


def load_bench_suite(spec: str | Path) -> list[SuiteItem]:
    """The rows a suite string names (see the module doc); a bad suite is one ``BenchError`` line."""
    text = str(spec)
    generated = _GENERATED.match(text)
    if generated:
        n, seed = int(generated[1]), int(generated[2] or 0)
        if n < 1:
            raise BenchError(f"suite {text!r} asks for no prompts; use geneval:N with N >= 1")
        return generate_suite(n, seed)
    path = Path(spec)
    if path.is_dir():
        files = sorted([*path.glob("*.jsonl"), *path.glob("*.txt")])
        if not files:
            raise BenchError(f"suite folder {path} has no .jsonl or .txt files")
        items = [item for f in files for item in _load_file(f)]
    elif path.is_file():
        items = _load_file(path)
    else:
        raise BenchError(
            f"no suite {text!r}: give a GenEval .jsonl file, a .txt prompt list, a folder of them, or geneval:N[:SEED]"
        )
    if not items:
        raise BenchError(f"suite {path} has no prompts")
    return items


def _load_file(path: Path) -> list[SuiteItem]:
    try:
        if path.suffix == ".txt":
            return load_prompt_list(path)
        return load_suite(path)
    except ValueError as e:
        raise BenchError(f"{e}; fix that line or remove it") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BenchError(f"cannot read suite {path}: {e}") from None


def suite_digest(items: list[SuiteItem]) -> str:
    """A short hash of the rows, to recognise the same suite when a bench resumes."""
    return hashlib.sha256("".join(i.to_json() + "\n" for i in items).encode()).hexdigest()[:16]


def suite_name(spec: str | Path) -> str:
    """A folder-friendly name: ``geneval:200:1`` → ``geneval-200-s1``; ``a/b.jsonl`` → ``b``."""
    generated = _GENERATED.match(str(spec))
    if generated:
        return f"geneval-{generated[1]}-s{generated[2] or 0}"
    return Path(spec).stem or "suite"
