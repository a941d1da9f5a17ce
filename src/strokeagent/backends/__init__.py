"""Backends: the models that stages call, each described by a TOML file.

    >>> head = load_backend("smollm2")                # backends/smollm2.toml, bundled   # doctest: +SKIP
    >>> head = load_backend("my-backends/vllm.toml")  # or any file                     # doctest: +SKIP

A description is a ``kind`` plus the options its factory takes::

    kind = "openai"
    base_url = "http://127.0.0.1:8000/v1"
    model = "Qwen/Qwen2.5-VL-7B-Instruct"

Kinds live in ``strokeagent.core.registry.BACKEND_KINDS`` (built-ins, the
``strokeagent.backends`` entry-point group, or ``"package.module:Factory"``).
A description is built once per process: every stage that names the same file
shares the object, so a unified model or a diffusion pipeline loads once.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from strokeagent.core.registry import BACKEND_KINDS
from strokeagent.errors import PolicyError

_BUILT: dict[tuple[str, str], Any] = {}


def bundled_backends_dir() -> Path:
    """``backends/`` of a source checkout, else the copy inside an installed wheel."""
    checkout = Path(__file__).resolve().parents[3] / "backends"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parents[1] / "_bundled" / "backends"


def resolve_backend_path(ref: str | Path) -> Path:
    path = Path(ref)
    if path.is_file():
        return path.resolve()
    bundled = bundled_backends_dir() / f"{str(ref).removesuffix('.toml')}.toml"
    if bundled.is_file():
        return bundled
    raise PolicyError(
        f"no backend description {str(ref)!r}: not a file, nor a bundled backend in {bundled_backends_dir()}"
    )


def read_backend_table(ref: str | Path) -> tuple[Path, dict[str, Any]]:
    path = resolve_backend_path(ref)
    try:
        return path, tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"{path}: not valid TOML ({e}); fix the file") from None


#: Options that name a file or folder; relative ones are read against the description's own folder.
PATH_OPTIONS = ("model", "path", "checkout")


def described_table(ref: str | Path) -> tuple[Path, dict[str, Any]]:
    """``read_backend_table``, with relative paths (``./``, ``../``) in ``PATH_OPTIONS`` read against the file's folder."""
    path, table = read_backend_table(ref)
    for key in PATH_OPTIONS:
        value = table.get(key)
        if isinstance(value, str) and value.startswith(("./", "../")) and (path.parent / value).exists():
            table[key] = str((path.parent / value).resolve())
    return path, table


def load_backend(ref: str | Path) -> Any:
    """Build (once per process) the backend a description file names."""
    path, table = described_table(ref)
    key = (str(path), repr(sorted(table.items())))
    if key not in _BUILT:
        _BUILT[key] = BACKEND_KINDS.build(table, where=str(path))
    return _BUILT[key]


def forget_backends() -> None:
    """Drop every built backend (frees their models)."""
    _BUILT.clear()


def backend_refusal(ref: object, where: str) -> str | None:
    """Why the backend described by the TOML file ``ref`` cannot be built here, or ``None``.

    A file that cannot be read is ``None`` too: whatever builds it says what is wrong, in its own words.
    """
    from strokeagent.core.registry import BACKEND_KINDS
    from strokeagent.errors import StrokeAgentError
    from strokeagent.extras import kind_refusal

    try:
        path, table = read_backend_table(ref)  # type: ignore[arg-type]
    except (StrokeAgentError, OSError, ValueError):
        return None
    kind = table.get("kind")
    return kind_refusal(BACKEND_KINDS, kind if isinstance(kind, str) else None, f"{where} {path}")
