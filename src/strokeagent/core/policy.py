"""Policies: the four stages plus a loop spec, in Python or as a TOML file.

    >>> policy = load_policy("sketch")            # a bundled policy, by name
    >>> policy.loop.order
    ('plan', 'draft', 'reflect', 'refine')

A policy file names a stage *kind* and its options for each stage, and the loop::

    name = "sketch"
    description = "Scene-graph plan, stroke canvas, pixel inspection, targeted fixes."

    [loop]
    order = ["plan", "draft", "reflect", "refine"]
    max_steps = 5
    max_refines = 2

    [stages.draft]
    kind = "sketch.draft"
    mistake_rate = 0.25

``extends = "../sketch.toml"`` starts from another file and overrides what is
given (the ablations are one ``[loop]`` table each). Stage tables with the same
kind and options build one shared object, so a unified model configured for all
four stages is loaded once. Kinds come from the built-in table below, from the
``strokeagent.core.stages`` entry-point group, or as ``"package.module:Factory"``.
"""

from __future__ import annotations

import inspect
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strokeagent.core.loop import LoopSpec
from strokeagent.core.registry import STAGE_KINDS
from strokeagent.core.stages import STAGE_PROTOCOLS, Drafter, Planner, Refiner, Reflector
from strokeagent.core.state import STAGES
from strokeagent.errors import LoopError, PolicyError


@dataclass(frozen=True)
class Policy:
    """Four stages and the loop that orders them.

    Stages the loop does not use may be ``None``. One object may fill all four
    roles (a unified model sharing its context)::

        Policy(name="mine", loop=LoopSpec(), planner=m, drafter=m, reflector=m, refiner=m)
    """

    name: str
    loop: LoopSpec
    drafter: Drafter
    planner: Planner | None = None
    reflector: Reflector | None = None
    refiner: Refiner | None = None
    description: str = ""
    #: The resolved TOML tables this policy was built from; a run stores them so ``resume`` can rebuild it.
    source: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for stage in self.loop.order:
            impl = self.stage(stage)
            if impl is None:
                raise PolicyError(
                    f"policy {self.name!r}: the loop runs {stage} but no {stage} stage is given"
                )
            _check_implements(stage, impl, f"policy {self.name!r}")

    def stage(self, name: str) -> Any:
        return {
            "plan": self.planner,
            "draft": self.drafter,
            "reflect": self.reflector,
            "refine": self.refiner,
        }[name]

    def with_loop(self, **changes: Any) -> Policy:
        """The same stages under another loop: ``policy.with_loop(order=("draft",), max_steps=1)``."""
        loop = LoopSpec.parse({**self.loop.model_dump(), **changes}, where=f"policy {self.name!r}")
        source = None
        if self.source is not None:
            source = {**self.source, "loop": loop.model_dump(mode="json")}
        return Policy(
            self.name,
            loop,
            self.drafter,
            self.planner,
            self.reflector,
            self.refiner,
            self.description,
            source,
        )


def _check_implements(stage: str, impl: Any, where: str) -> None:
    protocol = STAGE_PROTOCOLS[stage]  # type: ignore[index]
    method = getattr(impl, stage, None)
    if not isinstance(impl, protocol) or not inspect.iscoroutinefunction(method):
        raise PolicyError(
            f"{where}: {type(impl).__name__} cannot be the {stage} stage: it needs an `async def {stage}(...)` method"
        )


# -- files -------------------------------------------------------------------


def bundled_policies_dir() -> Path:
    """``policies/`` of a source checkout, else the copy inside an installed wheel."""
    checkout = Path(__file__).resolve().parents[3] / "policies"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parents[1] / "_bundled" / "policies"


def resolve_policy_path(name_or_path: str | Path) -> Path:
    """A file path as given, or a bundled policy by name (``sketch``, ``ablations/full``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = bundled_policies_dir() / f"{str(name_or_path).removesuffix('.toml')}.toml"
    if bundled.is_file():
        return bundled
    known = ", ".join(p for p, _ in list_bundled())
    raise PolicyError(f"no policy file or bundled policy named {str(name_or_path)!r}; bundled: {known}")


def list_bundled() -> list[tuple[str, str]]:
    """``(name, description)`` for every bundled policy."""
    root = bundled_policies_dir()
    out = []
    for path in sorted(root.rglob("*.toml")):
        name = path.relative_to(root).with_suffix("").as_posix()
        try:
            desc = read_policy_tables(path).get("description", "")
        except PolicyError as e:
            desc = f"(broken: {e})"
        out.append((name, desc))
    return out


def read_policy_tables(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The TOML tables of ``path`` with ``extends`` chains merged (later files win)."""
    path = path.resolve()
    if path in _seen:
        raise PolicyError(f"{path}: 'extends' loops back to itself")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"{path}: not valid TOML ({e}); fix the file") from None
    except OSError as e:
        raise PolicyError(f"cannot read policy file {path}: {e.strerror}") from None
    _absolutise_backend_paths(data, path.parent)
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    base_path = (path.parent / base_name).resolve()
    if not base_path.is_file():
        raise PolicyError(f"{path}: extends {base_name!r}, which does not exist (looked for {base_path})")
    return _merge(read_policy_tables(base_path, (*_seen, path)), data)


def _absolutise_backend_paths(data: dict[str, Any], folder: Path) -> None:
    """``backend = "x.toml"`` options are relative to the file that says them; keep them true after merging."""
    for table in (data.get("stages") or {}).values():
        if not isinstance(table, dict):
            continue
        for key, value in table.items():
            if (key == "backend" or key.endswith("_backend")) and isinstance(value, str) and value.endswith(".toml"):
                candidate = folder / value
                if candidate.is_file():
                    table[key] = str(candidate.resolve())


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def load_policy(name_or_path: str | Path) -> Policy:
    """Build the policy in a TOML file (or a bundled one by name); every problem is one clear line."""
    path = resolve_policy_path(name_or_path)
    tables = read_policy_tables(path)
    return policy_from_tables(tables, where=str(path), default_name=path.stem)


_TOP_KEYS = {"name", "description", "loop", "stages"}


def policy_from_tables(tables: dict[str, Any], where: str = "policy", default_name: str = "policy") -> Policy:
    unknown = set(tables) - _TOP_KEYS
    if unknown:
        raise PolicyError(
            f"{where}: unknown key {sorted(unknown)[0]!r}; a policy has {', '.join(sorted(_TOP_KEYS))}"
        )
    try:
        loop = LoopSpec.parse(tables.get("loop", {}), where=f"{where} [loop]")
    except LoopError as e:
        raise PolicyError(str(e)) from None
    stage_tables = tables.get("stages", {})
    if not isinstance(stage_tables, dict):
        raise PolicyError(f"{where}: [stages] must be a table of stage tables")
    for name in stage_tables:
        if name not in STAGES:
            raise PolicyError(f"{where}: unknown stage [stages.{name}]; use {', '.join(STAGES)}")
    built: dict[str, Any] = {}
    shared: dict[str, Any] = {}
    for stage in loop.order:
        table = stage_tables.get(stage)
        if table is None:
            raise PolicyError(f"{where}: the loop runs {stage} but there is no [stages.{stage}] table")
        key = json.dumps(table, sort_keys=True, default=str)
        if key not in shared:
            shared[key] = build_stage(table, where=f"{where} [stages.{stage}]")
        built[stage] = shared[key]
        _check_implements(stage, built[stage], f"{where} [stages.{stage}]")
    return Policy(
        name=tables.get("name", default_name),
        description=tables.get("description", ""),
        loop=loop,
        planner=built.get("plan"),
        drafter=built["draft"],
        reflector=built.get("reflect"),
        refiner=built.get("refine"),
        source=tables,
    )


def build_stage(table: dict[str, Any], where: str) -> Any:
    return STAGE_KINDS.build(table, where)
