"""Which optional extra provides what, and one line that says which to install.

    >>> install_hint("bench")
    "pip install 'strokeagent[bench]'"
    >>> extra_for_module("torch.nn", prefer="strokeagent.backends.diffusers")
    'diffusers'
    >>> require("bench", "the chart")                      # doctest: +SKIP
    strokeagent.extras.ExtraMissing: the chart needs the 'bench' extra (matplotlib is not installed); install it with: pip install 'strokeagent[bench]'

The light install (``pip install strokeagent``) has no torch, diffusers,
transformers, openai, litserve, matplotlib, ray or mlflow; each comes with an extra of
``pyproject.toml``. Commands and kinds that need one check here before they do
any work, so a missing extra is one ``error:`` line naming it, never a traceback
after minutes of work. Nothing here imports the heavy modules: ``find_spec``
only looks for them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Any

from strokeagent.errors import PolicyError

#: Each extra of pyproject.toml and the import names it installs, in the order they are worth naming.
EXTRAS: dict[str, tuple[str, ...]] = {
    "diffusers": ("torch", "diffusers", "transformers", "safetensors", "accelerate"),
    "transformers": ("torch", "transformers", "safetensors", "accelerate", "scipy", "xgrammar", "gguf"),
    "vllm": ("openai",),
    "train": ("torch", "transformers", "safetensors", "accelerate", "peft", "datasets"),
    "serve": ("litserve", "httpx", "fastapi"),
    "bench": ("matplotlib",),
    "ray": ("ray",),
    "mlflow": ("mlflow",),
}

#: A module that is missing → the extra to name when nothing says better (torch is in several: the
#: first extra listing it wins). Modules the extras bring in as dependencies are named here too.
MODULE_EXTRAS: dict[str, str] = {
    **{m: extra for extra, modules in reversed(EXTRAS.items()) for m in modules},
    "uvicorn": "serve",
    "starlette": "serve",
}

#: What a built-in kind's module needs before it can be built: ``module → (extra, import names)``.
#: Only what the kind cannot run without; the extra installs the rest.
KIND_NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "strokeagent.backends.diffusers": ("diffusers", ("torch", "diffusers", "transformers")),
    "strokeagent.backends.transformers_head": ("transformers", ("torch", "transformers")),
    "strokeagent.backends.smollm2": ("transformers", ("torch", "transformers", "gguf")),
    "strokeagent.backends.openai_head": ("vllm", ("openai",)),
    "strokeagent.backends.http_image": ("vllm", ("openai",)),  # an alias of openai-images
    "strokeagent.backends.openai_images": ("vllm", ("openai",)),
    "strokeagent.testing.heads": ("transformers", ("torch", "transformers")),
    "strokeagent.unified.janus": ("transformers", ("torch", "transformers")),
    "strokeagent.unified.emu3": ("transformers", ("torch", "transformers")),
    "strokeagent.unified.bagel": ("transformers", ("torch", "transformers", "safetensors", "accelerate")),
    "strokeagent.critics.geneval": ("transformers", ("torch", "transformers")),
    "strokeagent.critics.clip_score": ("transformers", ("torch", "transformers")),
    "strokeagent.train.janus": ("train", ("torch", "transformers", "accelerate")),
    "strokeagent.train.bagel": ("train", ("torch", "transformers", "accelerate", "safetensors")),
}

#: What a command cannot start without: ``command → {extra: import names}`` (``serve image`` serves
#: a diffusers backend, so it needs both extras).
COMMAND_NEEDS: dict[str, dict[str, tuple[str, ...]]] = {
    "serve image": {"serve": ("litserve",), "diffusers": ("torch", "diffusers", "transformers")},
    "train": {"train": ("torch", "transformers", "accelerate")},
}

#: What a command's option cannot work without: ``option → (extra, import names)``.
OPTION_NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "--ray": ("ray", ("ray",)),
    "--ray-address": ("ray", ("ray",)),
    "--mlflow": ("mlflow", ("mlflow",)),
}


class ExtraMissing(PolicyError):
    """A module an extra provides is not installed; the message says which extra to install."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a half-removed module
        return False


def missing(extra: str, modules: Iterable[str] | None = None) -> list[str]:
    """The import names of ``extra`` (or just ``modules``) that are not installed."""
    return [m for m in (EXTRAS[extra] if modules is None else modules) if not installed(m)]


def install_hint(*extras: str) -> str:
    """``pip install 'strokeagent[a,b]'``."""
    return f"pip install 'strokeagent[{','.join(extras)}]'"


def _names(modules: list[str]) -> str:
    listed = modules[0] if len(modules) == 1 else f"{', '.join(modules[:-1])} and {modules[-1]}"
    return f"{listed} {'is' if len(modules) == 1 else 'are'} not installed"


def message(what: str, needs: dict[str, list[str]]) -> str:
    """One line: ``WHAT needs the 'x' extra (m is not installed); install it with: pip install ...``."""
    extras = list(needs)
    modules = [m for ms in needs.values() for m in ms if m]
    modules = list(dict.fromkeys(modules))
    one = len(extras) == 1
    which = f"the {extras[0]!r} extra" if one else "the extras " + " and ".join(map(repr, extras))
    detail = f" ({_names(modules)})" if modules else ""
    return f"{what} needs {which}{detail}; install {'it' if one else 'them'} with: {install_hint(*extras)}"


def require(extras: str | Iterable[str], what: str, modules: Iterable[str] | None = None) -> None:
    """Raise ``ExtraMissing`` (one line naming the extras) unless every module of ``extras`` is installed.

    ``modules``: check only these (what the caller really needs) instead of the whole extra.
    """
    names = [extras] if isinstance(extras, str) else list(extras)
    wanted = list(modules) if modules is not None else None
    needs = {e: missing(e, wanted) for e in names}
    needs = {e: ms for e, ms in needs.items() if ms}
    if needs:
        raise ExtraMissing(message(what, needs))


def require_command(command: str) -> None:
    """The check at the start of ``strokeagent COMMAND``: every extra it needs, one line if any is missing."""
    needs = {extra: missing(extra, modules) for extra, modules in COMMAND_NEEDS[command].items()}
    needs = {extra: gone for extra, gone in needs.items() if gone}
    if needs:
        raise ExtraMissing(message(f"strokeagent {command}", needs))


def require_kind(module: str, what: str) -> None:
    """The check before a built-in kind whose code lives in ``module`` is imported and built."""
    need = KIND_NEEDS.get(module)
    if need is not None:
        require(need[0], what, need[1])


def extra_for_module(name: str | None, prefer: str | None = None) -> str | None:
    """The extra that provides the missing module ``name`` (``torch.nn`` counts as ``torch``), or ``None``.

    ``prefer``: the module of the kind being built; when its extra provides ``name``, that one is named
    (torch missing for a diffusers backend: the diffusers extra, not train).
    """
    if not name:
        return None
    top = name.split(".")[0]
    need = KIND_NEEDS.get(prefer or "")
    if need is not None and top in EXTRAS[need[0]]:
        return need[0]
    return MODULE_EXTRAS.get(top)


def missing_module_message(what: str, name: str | None, prefer: str | None = None) -> str:
    """One line for an ``ImportError`` of module ``name``, naming its extra where one provides it."""
    extra = extra_for_module(name, prefer)
    top = (name or "").split(".")[0]
    if extra is not None:
        return message(what, {extra: [top]})
    module = f" {top!r}" if top else ""
    return f"{what} needs the module{module}, which is not installed; install the package that provides it"


def optional_note(extra: str, what: str) -> str | None:
    """A one-line note that ``what`` is skipped because ``extra`` is missing, or ``None`` when it is there."""
    gone = missing(extra)
    if not gone:
        return None
    return f"{what} skipped: {_names(gone)}; install it with: {install_hint(extra)}"


# -- the checks a command makes before it starts (each: the one line to print, or None) -------------


def command_refusal(command: str) -> str | None:
    """Why ``strokeagent COMMAND`` cannot start here (an extra it needs is missing), or ``None``."""
    try:
        require_command(command)
    except ExtraMissing as e:
        return str(e)
    return None


def option_refusal(command: str, option: str) -> str | None:
    """Why ``strokeagent COMMAND OPTION`` cannot work here (``bench --ray`` without ray), or ``None``."""
    extra, modules = OPTION_NEEDS[option]
    try:
        require(extra, f"strokeagent {command} {option}", modules)
    except ExtraMissing as e:
        return str(e)
    return None


def kind_refusal(table: Any, kind: str | None, where: str) -> str | None:
    """Why the built-in ``kind`` of the registry ``table`` (``CRITIC_KINDS``...) cannot be built here, or ``None``."""
    target = table.builtins.get(kind or "")
    if target is None:
        return None  # not built in: the registry itself says what is wrong with it when it is built
    try:
        require_kind(target.rpartition(":")[0], f"{where}: {table.what} {kind!r}")
    except ExtraMissing as e:
        return str(e)
    return None
