"""Registries: a ``kind`` name to a factory, built from a TOML table of options.

    >>> STAGE_KINDS.build({"kind": "testing.draft", "size": 32}, where="demo").size
    32

One mechanism serves stages, backends and critics. A kind is found, in order:
in the registry's built-in table (lazy ``"module:attr"`` paths, so nothing heavy
is imported until used); in the registry's Python entry-point group, where other
packages add their own kinds; or written out as ``"package.module:Factory"``.
Bad kinds and bad options are refused with one line naming where they came from.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from strokeagent import extras
from strokeagent.errors import PolicyError


@dataclass(frozen=True)
class Registry:
    what: str  # "stage kind", "backend kind", "critic kind"
    builtins: dict[str, str]
    entry_point_group: str

    def kinds(self) -> list[str]:
        return sorted({*self.builtins, *(ep.name for ep in entry_points(group=self.entry_point_group))})

    def factory(self, kind: str, where: str, *, trust_code: bool = True) -> Callable[..., Any]:
        target = self.builtins.get(kind) or self._entry_point(kind)
        if target is None and ":" in kind:
            if not trust_code:
                raise PolicyError(
                    f"{where}: {self.what} {kind!r} is code named by the run folder, not a registered kind; "
                    "resume with --trust-code (Python: trust_code=True) if you trust where the folder came from"
                )
            target = kind
        if target is None:
            raise PolicyError(
                f"{where}: unknown {self.what} {kind!r}; use one of {', '.join(self.kinds())}, or 'package.module:Factory'"
            )
        module_name, _, attr = target.rpartition(":")
        # A kind whose code needs an extra is refused, naming the extra, before anything is imported.
        extras.require_kind(module_name, f"{where}: {self.what} {kind!r}")
        try:
            return getattr(_import(module_name), attr)
        except ImportError as e:
            if isinstance(e, ModuleNotFoundError) and extras.extra_for_module(e.name) is not None:
                what = f"{where}: {self.what} {kind!r}"
                raise PolicyError(extras.missing_module_message(what, e.name, prefer=module_name)) from None
            extra = f" (install the package that provides {e.name!r})" if e.name else ""
            raise PolicyError(f"{where}: {self.what} {kind!r} needs {target}, which cannot be imported: {e}{extra}") from None
        except AttributeError as e:
            raise PolicyError(f"{where}: {self.what} {kind!r} points at {target}, which does not exist: {e}") from None

    def build(self, table: dict[str, Any], where: str, *, trust_code: bool = True) -> Any:
        """``factory(**options)`` for a table ``{"kind": ..., **options}``.

        ``trust_code=False`` builds registered kinds only: a ``module:Factory`` reference is refused.
        """
        if not isinstance(table, dict):
            raise PolicyError(f"{where}: expected a table with a kind, got {table!r}")
        options = dict(table)
        kind = options.pop("kind", None)
        if not isinstance(kind, str):
            example = next(iter(self.builtins), "name")
            raise PolicyError(f"{where}: missing 'kind' (e.g. kind = \"{example}\")")
        factory = self.factory(kind, where, trust_code=trust_code)
        try:
            inspect.signature(factory).bind(**options)
        except TypeError as e:
            raise PolicyError(f"{where}: bad options for {kind}: {e}") from None
        try:
            return factory(**options)
        except PolicyError:
            raise
        except (TypeError, ValueError, FileNotFoundError) as e:
            raise PolicyError(f"{where}: {kind} refused its options: {e}") from None
        except ImportError as e:
            what = f"{where}: {self.what} {kind!r}"
            if not isinstance(e, ModuleNotFoundError):  # installed, but not the version it needs
                raise PolicyError(f"{what} cannot import what it needs: {str(e).splitlines()[0]}") from None
            module_name = (self.builtins.get(kind) or self._entry_point(kind) or kind).rpartition(":")[0]
            raise PolicyError(extras.missing_module_message(what, e.name, prefer=module_name)) from None

    def _entry_point(self, kind: str) -> str | None:
        for ep in entry_points(group=self.entry_point_group):
            if ep.name == kind:
                return ep.value
        return None


STAGE_KINDS = Registry(
    what="stage kind",
    builtins={
        "sketch.plan": "strokeagent.sketch:SketchPlanner",
        "sketch.draft": "strokeagent.sketch:SketchDrafter",
        "sketch.reflect": "strokeagent.sketch:SketchReflector",
        "sketch.refine": "strokeagent.sketch:SketchRefiner",
        "sketch.layout": "strokeagent.sketch:SketchLayoutStage",
        "testing.plan": "strokeagent.testing:ScriptedPlanner",
        "testing.draft": "strokeagent.testing:ShapesDrafter",
        "testing.reflect": "strokeagent.testing:ScriptedReflector",
        "testing.refine": "strokeagent.testing:ShapesRefiner",
        "testing.note": "strokeagent.testing:CountingNote",
        # Text heads plan and reflect; image backends draft and refine (the composite policy).
        "head.plan": "strokeagent.kinds.head:HeadPlanner",
        "head.reflect": "strokeagent.kinds.head:HeadReflector",
        "diffusion.draft": "strokeagent.kinds.diffusion:DiffusionDrafter",
        "diffusion.refine": "strokeagent.kinds.diffusion:DiffusionRefiner",
        "hybrid.draft": "strokeagent.kinds.hybrid:SketchThenPaintDrafter",
        # One unified model for all four stages, on a shared context (the paper's policy).
        "process": "strokeagent.unified.process:ProcessStages",
        # A reflect stage built from any critic.
        "critic.reflect": "strokeagent.kinds.critic:CriticReflector",
    },
    entry_point_group="strokeagent.stages",
)

BACKEND_KINDS = Registry(
    what="backend kind",
    builtins={
        "diffusers": "strokeagent.backends.diffusers:DiffusersBackend",
        "http-image": "strokeagent.backends.http_image:HttpImageBackend",
        "openai-images": "strokeagent.backends.openai_images:OpenAIImagesBackend",
        "openai": "strokeagent.backends.openai_head:OpenAIHead",
        "transformers": "strokeagent.backends.transformers_head:TransformersHead",
        "smollm2": "strokeagent.backends.smollm2:smollm2_head",
        "tiny-text": "strokeagent.testing.heads:tiny_text_head",
        "janus": "strokeagent.unified.janus:JanusModel",
        "emu3": "strokeagent.unified.emu3:Emu3Model",
        "bagel": "strokeagent.unified.bagel:BagelModel",
        "process-tiny": "strokeagent.unified.tiny:TinyProcessModel",
    },
    entry_point_group="strokeagent.backends",
)

CRITIC_KINDS = Registry(
    what="critic kind",
    builtins={
        "sketch": "strokeagent.critics.sketch:SketchCritic",
        "geneval": "strokeagent.critics.geneval:GenEvalCritic",
        "clip-score": "strokeagent.critics.clip_score:ClipScoreCritic",
        "vlm-judge": "strokeagent.critics.vlm_judge:VlmJudgeCritic",
    },
    entry_point_group="strokeagent.critics",
)

SELECTOR_KINDS = Registry(
    what="selector kind",
    builtins={
        # Scores samples with any critic (a table of CRITIC_KINDS under `critic`).
        "critic": "strokeagent.kinds.critic:CriticSelector",
    },
    entry_point_group="strokeagent.selectors",
)

_REGISTRIES = (STAGE_KINDS, SELECTOR_KINDS, BACKEND_KINDS, CRITIC_KINDS)


def reference_of(obj: Any) -> tuple[dict[str, Any] | None, str]:
    """A table that rebuilds ``obj`` (``{"kind": ..., **options}``), or ``(None, why not)``.

    The kind is the registered name of ``obj``'s class where there is one, else its
    ``module:Class``. Options are the constructor's parameters read back from the
    attributes of the same names; every one must be there, and JSON.
    """
    cls = type(obj)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        return None, f"{cls.__qualname__} is defined in a script or function, not an importable module"
    target = f"{cls.__module__}:{cls.__qualname__}"
    kind = next((k for r in _REGISTRIES for k, t in r.builtins.items() if _same_class(t, cls)), target)
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return None, "its constructor cannot be inspected"
    options: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not hasattr(obj, p.name):
            if p.default is p.empty:
                return None, f"option {p.name!r} is not kept as an attribute, so it cannot be recorded"
            continue
        value = getattr(obj, p.name)
        if p.default is not p.empty and _json_equal(value, p.default):
            continue
        try:
            options[p.name] = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            return None, f"option {p.name!r} is a {type(value).__name__}, not JSON"
    return {"kind": kind, **options}, ""


def _json_equal(a: Any, b: Any) -> bool:
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (TypeError, ValueError):
        return False


def _import(module_name: str) -> Any:
    """A module by name, or a Python file by path (a policy's own code beside it: ``/x/critique.py``)."""
    if not module_name.endswith(".py"):
        return importlib.import_module(module_name)
    import hashlib
    import sys
    from importlib import util as importlib_util

    path = Path(module_name)
    name = f"_strokeagent_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib_util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"no Python file {path}", name=str(path))
    module = importlib_util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _same_class(target: str, cls: type) -> bool:
    module_name, _, attr = target.partition(":")
    if attr != cls.__qualname__ or not cls.__module__.startswith(module_name):
        return False
    try:
        return getattr(importlib.import_module(module_name), attr) is cls
    except ImportError:
        return False
