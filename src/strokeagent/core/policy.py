"""Policies: named stages plus a loop spec, in Python or as a TOML file.

    >>> policy = load_policy("sketch")            # a bundled policy, by name
    >>> policy.loop.order
    ('plan', 'draft', 'reflect', 'refine')

A policy file names a stage *kind* and its options for each stage, and the loop::

    name = "mine"

    [loop]
    order = ["plan", "critique", "draft", "reflect", "refine"]
    max_steps = 5
    max_refines = 2

    [stages.critique]
    kind = "mymodule:Critique"       # any stage: `async def run(self, view) -> Note`

    [stages.draft]
    kind = "sketch.draft"
    samples = 4                      # draw 4 candidates ...
    select = "reflect"               # ... and keep the one the reflect stage finds fewest conflicts in

Besides a kind's own options, a stage table may say ``role`` (what the stage is to
the loop: ``plan``, ``draft``, ``reflect``, ``refine`` or ``note``; by default its
name for the method's four stages, else what its ``run`` returns), ``samples`` and
``select`` (a stage name, or a selector table such as ``{ kind = "critic", critic = "sketch" }``).

``extends = "../sketch.toml"`` starts from another file and overrides what is
given. Stage tables with the same kind and options build one shared object, so a
unified model configured for all four stages is loaded once. Kinds come from the
built-in table, from the ``strokeagent.stages`` entry-point group, or as
``"package.module:Factory"`` (code: a run folder's references are built only when
the user trusts it).
"""

from __future__ import annotations

import inspect
import json
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from strokeagent.core.registry import SELECTOR_KINDS, STAGE_KINDS, reference_of
from strokeagent.core.stages import ROLE_PROTOCOLS, Canvas, Selector
from strokeagent.core.state import METHOD_STAGES, ROLES, Plan, Reflection, Role
from strokeagent.errors import LoopError, PolicyError

#: What `strokeagent run` and `generate` use when no policy is named, and why.
DEFAULT_POLICY = "process-tiny"
DEFAULT_POLICY_WHY = (
    "the trained unified model shipped with the package (numpy, no torch): on geneval:553 its full process "
    "scored 0.945 with the independent judge, 0.242 above its own one shot (2026-11-27); it knows GenEval's "
    "grammar only, so `sketch`, the rule-based reference, is the one for free-form prompts"
)
#: Keys of a stage table that are the loop's, not the kind's.
LOOP_KEYS = ("role", "samples", "select")
MAX_SAMPLES = 16


# -- the loop spec -----------------------------------------------------------------


class LoopSpec(BaseModel):
    """Stage order inside a step, the limits, and the stop rule.

    ``stop="planner"`` ends after the step whose plan says ``done``, or whose
    last reflection does, or at ``max_steps``; ``stop="fixed"`` always runs
    ``max_steps`` steps. Without a plan stage, each step's plan is the prompt
    itself, marked done.

        >>> LoopSpec(order=("plan", "draft", "reflect", "refine"), max_steps=3, max_refines=1).describe()
        'plan → draft → reflect ⟲ refine, up to 3 steps, 1 refine per step, stop when the planner says done'
        >>> LoopSpec(order=("draft", "refine"))
        Traceback (most recent call last):
        ...
        strokeagent.errors.LoopError: stage order draft → refine cannot run: refine needs an inspection (a reflect stage) right before it, to fix what it found; add one or drop refine
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    order: tuple[str, ...] = METHOD_STAGES
    max_steps: int = Field(default=5, ge=1, le=64)
    max_refines: int = Field(default=2, ge=0, le=16)
    stop: Literal["planner", "fixed"] = "planner"

    @field_validator("order", mode="before")
    @classmethod
    def _names(cls, order: Any) -> Any:
        if isinstance(order, str) or not isinstance(order, list | tuple):
            raise LoopError('the stage order is a list of stage names, e.g. order = ["plan", "draft"]')
        for name in order:
            if not isinstance(name, str) or not name.isidentifier():
                raise LoopError(f"stage name {name!r} in the order is not a name (letters, digits, _)")
        return tuple(order)

    def model_post_init(self, _: Any) -> None:
        # Names alone give the method stages' roles; a user's stage is checked once the policy knows its role.
        check_order(self.order, {n: n for n in self.order if n in METHOD_STAGES})  # type: ignore[misc]

    @classmethod
    def parse(cls, data: Any, where: str = "loop") -> LoopSpec:
        """Validate ``data``; every problem becomes one ``LoopError`` line naming ``where``."""
        if not isinstance(data, dict):
            raise LoopError(f"{where}: [loop] must be a table")
        try:
            return cls.model_validate(data)
        except LoopError as e:
            raise LoopError(f"{where}: {e}") from None
        except ValidationError as e:
            err = e.errors()[0]
            name = ".".join(str(p) for p in err["loc"]) or "loop"
            raise LoopError(f"{where}: {name}: {err['msg']}") from None

    def describe(self, roles: Mapping[str, Role] | None = None) -> str:
        roles = roles or {n: n for n in self.order if n in METHOD_STAGES}  # type: ignore[assignment]
        names: list[str] = []
        for name in self.order:
            if roles.get(name) == "refine" and names:
                names[-1] = f"{names[-1]} ⟲ {name}"
            else:
                names.append(name)
        refining = any(roles.get(n) == "refine" for n in self.order)
        stop = "stop when the planner says done" if self.stop == "planner" else "always"
        refines = f", {self.max_refines} refine{'s' if self.max_refines != 1 else ''} per step" if refining else ""
        return f"{' → '.join(names)}, up to {self.max_steps} steps{refines}, {stop}"


def check_order(order: tuple[str, ...], roles: Mapping[str, Role]) -> None:
    """Raise ``LoopError`` when ``order`` cannot run; ``roles`` may leave a user's stage out (not known yet)."""
    reason = _why_order_cannot_run(order, roles)
    if reason:
        raise LoopError(f"stage order {' → '.join(order) or '(empty)'} cannot run: {reason}")


def _why_order_cannot_run(order: tuple[str, ...], roles: Mapping[str, Role]) -> str | None:
    if not order:
        return "it is empty; a step needs at least draft"
    twice = next((n for n in order if order.count(n) > 1), None)
    if twice:
        return (f"{twice} appears twice; each stage runs once per step (refine repeats through its inspection): "
                "give the second one its own name and [stages.NAME] table")  # fmt: skip
    known = all(n in roles for n in order)
    drafts = [i for i, n in enumerate(order) if roles.get(n) == "draft"]
    if known and not drafts:
        return "no stage draws (no draft), so no image is ever made; add draft"
    first_draft = drafts[0] if drafts else len(order)
    for i, name in enumerate(order):
        role = roles.get(name)
        if role == "plan" and i > first_draft:
            return f"{name} plans after {order[first_draft]} draws, but the draft draws the plan; put {name} first"
        if role == "reflect" and i < first_draft and known:
            return f"{name} inspects before anything is drawn; put it after {order[first_draft] if drafts else 'draft'}"
        before = order[i - 1] if i else None
        if role == "refine" and (before is None or (before in roles and roles[before] != "reflect")):
            return (f"{name} needs an inspection (a reflect stage) right before it, to fix what it found; "
                    f"add one or drop {name}")  # fmt: skip
    return None


def recursion_limit(spec: LoopSpec) -> int:
    """LangGraph's superstep budget: every stage of every step, every refine round, with room to spare."""
    return spec.max_steps * (len(spec.order) + 2 * spec.max_refines * len(spec.order)) + 8


# -- stages in a policy ---------------------------------------------------------------


@dataclass(frozen=True)
class StageSpec:
    """A stage as the policy holds it: the object, its role in the loop, and its samples.

    ``select`` picks among ``samples``: a ``Selector``, or the name of a reflect
    stage of the policy (fewest conflicts wins). ``table`` is the TOML table it was
    built from, which a run records so that ``resume`` rebuilds the same stage.
    ``method`` is the one the loop calls (its role's, else ``run``); the policy sets it.
    """

    impl: Any
    role: Role | None = None
    samples: int = 1
    select: Selector | str | None = None
    table: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    method: str = field(default="", compare=False, repr=False)


def role_of(name: str, impl: Any, role: str | None = None) -> Role:
    """What a stage is to the loop: as told, else its name (the method's four), else what it can do."""
    if role is not None:
        if role not in ROLES:
            raise PolicyError(f"role {role!r} is not one of {', '.join(ROLES)}")
        return role  # type: ignore[return-value]
    if name in METHOD_STAGES:
        return name  # type: ignore[return-value]
    methods = [r for r in METHOD_STAGES if inspect.iscoroutinefunction(getattr(impl, r, None))]
    if len(methods) == 1 and not _has_run(impl):
        return methods[0]  # type: ignore[return-value]
    returns = _run_returns(impl)
    return {Plan: "plan", Canvas: "draft", Reflection: "reflect"}.get(returns, "note")  # type: ignore[return-value]


def _has_run(impl: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(impl, "run", None))


def _run_returns(impl: Any) -> Any:
    try:
        return typing.get_type_hints(impl.run).get("return")
    except Exception:  # an annotation that does not resolve says nothing about the role
        return None


def check_stage(name: str, spec: StageSpec, where: str) -> str:
    """The method the loop calls for this stage: its role's (``async def draft``...), else ``async def run``;
    a ``PolicyError`` when the object has neither."""
    method = spec.role if spec.role in ROLE_PROTOCOLS else None
    if method and inspect.iscoroutinefunction(getattr(spec.impl, method, None)):
        return method
    if _has_run(spec.impl):
        return "run"
    wanted = f"`async def {method}(...)` or `async def run(self, view)`" if method else "`async def run(self, view)`"
    raise PolicyError(f"{where}: {type(spec.impl).__name__} cannot be the {name} stage: it needs {wanted}")


@dataclass(frozen=True)
class Policy:
    """Named stages and the loop that orders them.

        Policy(name="mine", loop=LoopSpec(), stages={"plan": m, "draft": m, "reflect": m, "refine": m})

    A stage is any object with its role's method (or ``run``); wrap it in a
    ``StageSpec`` to give its role, samples or selector. One object may fill
    several stages (a unified model sharing its context). Stages the loop does
    not run may be given (a reflect stage used only to select samples).
    """

    name: str
    loop: LoopSpec
    stages: Mapping[str, Any]
    description: str = ""

    def __post_init__(self) -> None:
        where = f"policy {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise PolicyError(f"policy name {self.name!r} must be a non-empty string")
        specs: dict[str, StageSpec] = {}
        for name, given in dict(self.stages).items():
            spec = given if isinstance(given, StageSpec) else StageSpec(given)
            try:
                role = role_of(name, spec.impl, spec.role)
            except PolicyError as e:
                raise PolicyError(f"{where} [stages.{name}]: {e}") from None
            spec = StageSpec(spec.impl, role, spec.samples, spec.select, spec.table)
            method = check_stage(name, spec, f"{where} [stages.{name}]")
            spec = StageSpec(spec.impl, role, spec.samples, spec.select, spec.table, method)
            specs[name] = spec
        object.__setattr__(self, "stages", specs)
        for name in self.loop.order:
            if name not in specs:
                raise PolicyError(f"{where}: the loop runs {name} but no {name} stage is given")
        try:
            check_order(self.loop.order, self.roles)
        except LoopError as e:
            raise PolicyError(f"{where}: {e}") from None
        for name, spec in specs.items():
            _check_samples(name, spec, specs, f"{where} [stages.{name}]")
        check_handoffs(self)

    @property
    def roles(self) -> dict[str, Role]:
        return {name: spec.role for name, spec in self.stages.items()}  # type: ignore[misc]

    def stage(self, name: str) -> Any:
        """The object that runs stage ``name``."""
        return self.stages[name].impl

    def describe(self) -> str:
        return self.loop.describe(self.roles)

    def with_loop(self, **changes: Any) -> Policy:
        """The same stages under another loop: ``policy.with_loop(order=("draft",), max_steps=1)``."""
        loop = LoopSpec.parse({**self.loop.model_dump(), **changes}, where=f"policy {self.name!r}")
        return Policy(self.name, loop, self.stages, self.description)

    def record(self) -> dict[str, Any]:
        """The tables that rebuild this policy: what a run keeps in run.json for ``resume``.

        A stage built from a table records that table; one made in Python records
        an importable ``module:Factory`` reference with its options, or says why it
        cannot (in ``"unrecorded"``), and resume then asks for the policy.
        """
        stages: dict[str, Any] = {}
        for name, spec in self.stages.items():
            if spec.table is not None:
                stages[name] = spec.table
                continue
            table, why = reference_of(spec.impl)
            if table is None:
                stages[name] = {"unrecorded": f"{type(spec.impl).__name__}: {why}"}
                continue
            if spec.role != role_of(name, spec.impl):
                table["role"] = spec.role
            if spec.samples != 1:
                table["samples"] = spec.samples
            if isinstance(spec.select, str):
                table["select"] = spec.select
            elif spec.select is not None:
                sel, why = reference_of(spec.select)
                if sel is None:
                    stages[name] = {"unrecorded": f"its selector {type(spec.select).__name__}: {why}"}
                    continue
                table["select"] = sel
            stages[name] = table
        return {"name": self.name, "description": self.description,
                "loop": self.loop.model_dump(mode="json"), "stages": stages}  # fmt: skip


def _check_samples(name: str, spec: StageSpec, specs: Mapping[str, StageSpec], where: str) -> None:
    if not isinstance(spec.samples, int) or isinstance(spec.samples, bool) or not 1 <= spec.samples <= MAX_SAMPLES:
        raise PolicyError(f"{where}: samples must be a whole number from 1 to {MAX_SAMPLES}, got {spec.samples!r}")
    if spec.samples > 1 and spec.role not in ("draft", "refine"):
        raise PolicyError(f"{where}: samples = {spec.samples}, but only an image stage (draft, refine) draws samples")
    if spec.samples > 1 and spec.select is None:
        raise PolicyError(f'{where}: samples = {spec.samples} needs select (a reflect stage\'s name, or '
                          '{ kind = "critic", critic = "..." }) to pick one')  # fmt: skip
    if isinstance(spec.select, str):
        chosen = specs.get(spec.select)
        if chosen is None or chosen.method != "reflect":  # the loop calls its reflect(view, plan, image)
            reflects = [n for n, s in specs.items() if s.method == "reflect"] or ["(none)"]
            raise PolicyError(f"{where}: select = {spec.select!r} names no reflect stage of the policy; "
                              f"use one of {', '.join(reflects)} or a selector table")  # fmt: skip
    elif spec.select is not None and not inspect.iscoroutinefunction(getattr(spec.select, "scores", None)):
        raise PolicyError(f"{where}: select gives a {type(spec.select).__name__}, which cannot score samples "
                          "(it needs `async def scores(view, candidates)`)")  # fmt: skip


def check_handoffs(policy: Policy) -> None:
    """Every hand-off a stage ``needs`` is given by a stage before it in the order (or the policy is refused)."""
    given: dict[type, str] = {}
    for name in policy.loop.order:
        impl = policy.stage(name)
        for kind in getattr(impl, "needs", ()):
            if kind not in given:
                givers = [n for n, s in policy.stages.items() if kind in getattr(s.impl, "gives", ())]
                hint = f"{', '.join(givers)} gives one: put it before {name}" if givers else (
                    f"add a stage that gives one before {name}")  # fmt: skip
                raise PolicyError(
                    f"policy {policy.name!r}: stage {name} ({type(impl).__name__}) needs a {kind.__name__} from an "
                    f"earlier stage, and no stage before it gives one; {hint}"
                )
        for kind in getattr(impl, "gives", ()):
            given.setdefault(kind, name)


# -- files -------------------------------------------------------------------------


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
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not UTF-8 text; save the policy file as UTF-8") from None
    except RecursionError:
        raise PolicyError(f"{path}: nested too deeply to read; a policy is a few flat tables") from None
    except OSError as e:
        raise PolicyError(f"cannot read policy file {path}: {e.strerror}") from None
    _absolutise_backend_paths(data, path.parent)
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise PolicyError(f"{path}: extends must be a file name, e.g. extends = \"../sketch.toml\"")
    base_path = (path.parent / base_name).resolve()
    if not base_path.is_file():
        raise PolicyError(f"{path}: extends {base_name!r}, which does not exist (looked for {base_path})")
    return _merge(read_policy_tables(base_path, (*_seen, path)), data)


def _absolutise_backend_paths(data: dict[str, Any], folder: Path) -> None:
    """``backend = "x.toml"`` options are relative to the file that says them; keep them true after merging."""
    stages = data.get("stages")
    for table in (stages.values() if isinstance(stages, dict) else ()):
        if not isinstance(table, dict):
            continue
        kind = table.get("kind")
        if isinstance(kind, str) and ":" in kind:
            # `kind = "critique:Critique"` may name a Python file beside the policy file.
            module, _, attr = kind.partition(":")
            beside = folder / f"{module.replace('.', '/')}.py"
            if beside.is_file():
                table["kind"] = f"{beside.resolve()}:{attr}"
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


def policy_from_tables(
    tables: dict[str, Any], where: str = "policy", default_name: str = "policy", *, trust_code: bool = True
) -> Policy:
    """A policy from its TOML tables. ``trust_code=False`` (a run folder's tables) builds only registered kinds."""
    if not isinstance(tables, dict):
        raise PolicyError(f"{where}: a policy is a table")
    unknown = set(tables) - _TOP_KEYS
    if unknown:
        raise PolicyError(
            f"{where}: unknown key {sorted(unknown)[0]!r}; a policy has {', '.join(sorted(_TOP_KEYS))}"
        )
    for key in ("name", "description"):
        if key in tables and not isinstance(tables[key], str):
            raise PolicyError(f"{where}: {key} must be a string, got {tables[key]!r}")
    try:
        loop = LoopSpec.parse(tables.get("loop", {}), where=f"{where} [loop]")
    except LoopError as e:
        raise PolicyError(str(e)) from None
    stage_tables = tables.get("stages", {})
    if not isinstance(stage_tables, dict):
        raise PolicyError(f"{where}: [stages] must be a table of stage tables")
    for name, table in stage_tables.items():
        if not isinstance(table, dict):
            raise PolicyError(f'{where}: [stages.{name}] must be a table, e.g. [stages.{name}] kind = "..."')
        if "unrecorded" in table:
            raise PolicyError(f"{where}: stage {name} was made in Python and could not be recorded "
                              f"({table['unrecorded']})")  # fmt: skip
    needed = list(loop.order)
    for name in loop.order:  # a stage named by another's select is built too
        select = stage_tables.get(name, {}).get("select")
        if isinstance(select, str) and select not in needed:
            needed.append(select)
    built: dict[str, StageSpec] = {}
    shared: dict[str, Any] = {}
    for name in needed:
        table = stage_tables.get(name)
        if table is None:
            raise PolicyError(f"{where}: the loop runs {name} but there is no [stages.{name}] table")
        at = f"{where} [stages.{name}]"
        kind_table = {k: v for k, v in table.items() if k not in LOOP_KEYS}
        key = json.dumps(kind_table, sort_keys=True, default=str)
        if key not in shared:
            shared[key] = STAGE_KINDS.build(kind_table, at, trust_code=trust_code)
        select = table.get("select")
        if isinstance(select, dict):
            select = SELECTOR_KINDS.build(select, f"{at} select", trust_code=trust_code)
        elif select is not None and not isinstance(select, str):
            raise PolicyError(f"{at}: select must be a stage name or a selector table, got {select!r}")
        samples = table.get("samples", 1)
        try:
            role = role_of(name, shared[key], table.get("role"))
        except PolicyError as e:
            raise PolicyError(f"{at}: {e}") from None
        built[name] = StageSpec(shared[key], role, samples, select, table)
    return Policy(
        name=tables.get("name", default_name),
        description=tables.get("description", ""),
        loop=loop,
        stages=built,
    )


__all__ = [
    "LoopSpec",
    "Policy",
    "StageSpec",
    "check_order",
    "load_policy",
    "policy_from_tables",
    "recursion_limit",
]
