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
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from strokeagent.errors import PolicyError


@dataclass(frozen=True)
class Registry:
    what: str  # "stage kind", "backend kind", "critic kind"
    builtins: dict[str, str]
    entry_point_group: str

    def kinds(self) -> list[str]:
        return sorted({*self.builtins, *(ep.name for ep in entry_points(group=self.entry_point_group))})

    def factory(self, kind: str, where: str) -> Callable[..., Any]:
        target = self.builtins.get(kind) or self._entry_point(kind) or (kind if ":" in kind else None)
        if target is None:
            raise PolicyError(
                f"{where}: unknown {self.what} {kind!r}; use one of {', '.join(self.kinds())}, or 'package.module:Factory'"
            )
        module_name, _, attr = target.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except ImportError as e:
            extra = f" (install the extra that provides {e.name!r})" if e.name else ""
            raise PolicyError(f"{where}: {self.what} {kind!r} needs {target}, which cannot be imported: {e}{extra}") from None
        except AttributeError as e:
            raise PolicyError(f"{where}: {self.what} {kind!r} points at {target}, which does not exist: {e}") from None

    def build(self, table: dict[str, Any], where: str) -> Any:
        """``factory(**options)`` for a table ``{"kind": ..., **options}``."""
        options = dict(table)
        kind = options.pop("kind", None)
        if not isinstance(kind, str):
            example = next(iter(self.builtins), "name")
            raise PolicyError(f"{where}: missing 'kind' (e.g. kind = \"{example}\")")
        factory = self.factory(kind, where)
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
        "testing.plan": "strokeagent.testing:ScriptedPlanner",
        "testing.draft": "strokeagent.testing:ShapesDrafter",
        "testing.reflect": "strokeagent.testing:ScriptedReflector",
        "testing.refine": "strokeagent.testing:ShapesRefiner",
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
        "openai": "strokeagent.backends.openai_head:OpenAIHead",
        "transformers": "strokeagent.backends.transformers_head:TransformersHead",
        "smollm2": "strokeagent.backends.smollm2:smollm2_head",
        "tiny-text": "strokeagent.testing.heads:tiny_text_head",
        "janus": "strokeagent.unified.janus:JanusModel",
        "emu3": "strokeagent.unified.emu3:Emu3Model",
        "bagel": "strokeagent.unified.bagel:BagelModel",
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
