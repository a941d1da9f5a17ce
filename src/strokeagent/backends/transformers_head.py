"""A text head on a local transformers model, decoding held to the schema by xgrammar.

    >>> head = TransformersHead(model="~/.cache/strokeagent/smollm2-135m-instruct")   # doctest: +SKIP
    >>> head.chat_sync([{"role": "user", "content": "plan"}], schema=PlanAnswer)       # doctest: +SKIP
    PlanAnswer(instruction='...', description='...', done=False)

Causal LMs (``AutoModelForCausalLM``, text only) and image-text-to-text models
(``AutoModelForImageTextToText`` with their processor, which see the images) load
from a folder, or from a hub id already in the local cache: nothing is downloaded.

Why xgrammar for constrained decoding: it is the engine vLLM, SGLang and TensorRT-LLM
use for structured output, so a schema means the same thing locally and on the
server; it ships a transformers ``LogitsProcessor``; its token masks are computed in
C++, fast on CPU. lm-format-enforcer does not import under transformers 5 without a
shim, and outlines-core would need our own logits processor and vocabulary mapping.
Whitespace between JSON tokens is not allowed (``any_whitespace=False``): with bounded
string and list lengths in the schema, every answer then ends within a known number of
tokens, even from a random-weight model.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from strokeagent.core.threads import OwnThread
from strokeagent.errors import PolicyError, RunError

if TYPE_CHECKING:
    from PIL import Image

T = TypeVar("T", bound=BaseModel)

_DTYPES = ("float32", "bfloat16", "float16", "auto")


class TransformersHead(OwnThread):
    """``chat(messages, images, schema=...)`` on a model loaded in this process.

    The model loads when the head is built (so a policy that names a missing or broken
    model is refused when it loads, not mid-run). Calls run one at a time on the head's
    own thread (``executor``, see ``core/threads.py``), greedy unless ``temperature > 0``
    (then seeded by ``seed``).
    """

    kind = "transformers"
    thread_name = "head"

    def __init__(
        self,
        model: str,
        dtype: str = "float32",
        device: str = "cpu",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
        trust_remote_code: bool = False,
    ) -> None:
        if dtype not in _DTYPES:
            raise PolicyError(f"transformers head: dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
        if max_new_tokens < 1 or temperature < 0:
            raise PolicyError("transformers head: max_new_tokens must be >= 1 and temperature >= 0")
        self.model_ref = model
        self.source = _resolve(model)
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed
        self.calls = 0
        self._lock = threading.Lock()
        self._grammars: dict[str, Any] = {}
        self._load(dtype, trust_remote_code)

    def __str__(self) -> str:
        return f"text head transformers {self.model_ref!r}"

    def _load(self, dtype: str, trust_remote_code: bool) -> None:
        import torch
        import xgrammar
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        options = {"local_files_only": True, "trust_remote_code": trust_remote_code}
        try:
            config = AutoConfig.from_pretrained(self.source, **options)
            self.vision = config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
            torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
            if self.vision:
                self.processor = AutoProcessor.from_pretrained(self.source, **options)
                self.tokenizer = self.processor.tokenizer
                loader = AutoModelForImageTextToText
            else:
                self.processor = None
                self.tokenizer = AutoTokenizer.from_pretrained(self.source, **options)
                loader = AutoModelForCausalLM
            self.model = (
                loader.from_pretrained(self.source, dtype=torch_dtype, use_safetensors=True, **options).to(self.device).eval()
            )
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise PolicyError(
                f"transformers head: cannot load {self.model_ref!r} from {self.source}: {e}"
            ) from None
        if self.tokenizer.chat_template is None:
            raise PolicyError(
                f"transformers head: {self.model_ref!r} has no chat template; use an instruct model"
            )
        vocab_size = self.model.config.get_text_config().vocab_size
        info = xgrammar.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=vocab_size)
        self._compiler = xgrammar.GrammarCompiler(info, max_threads=2)

    async def chat(
        self, messages: list[dict[str, Any]], images: Sequence[Image.Image] = (), *, schema: type[T]
    ) -> T:
        """One schema-valid answer (a model that cannot see images is refused them)."""
        if images and not self.vision:
            raise RunError(f"{self}: this model reads no images (a causal LM), yet {len(images)} were sent")
        return await self.on_own_thread(self._chat, messages, list(images), schema)

    def chat_sync(
        self, messages: list[dict[str, Any]], images: Sequence[Image.Image] = (), *, schema: type[T]
    ) -> T:
        """``chat`` for scripts and notebooks."""
        return asyncio.run(self.chat(messages, images, schema=schema))

    def _chat(self, messages: list[dict[str, Any]], images: list[Image.Image], schema: type[T]) -> T:
        import torch
        import xgrammar

        with self._lock:
            self.calls += 1
            inputs = self._inputs(messages, images)
            prompt_len = inputs["input_ids"].shape[1]
            sampling = (
                {"do_sample": True, "temperature": self.temperature}
                if self.temperature > 0
                else {"do_sample": False}
            )
            if self.temperature > 0:
                torch.manual_seed(self.seed + self.calls)
            with torch.inference_mode():
                out = self.model.generate(
                    **inputs,
                    max_new_tokens=self.max_new_tokens,
                    logits_processor=[xgrammar.contrib.hf.LogitsProcessor(self._grammar(schema))],
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                    **sampling,
                )
            text = self.tokenizer.decode(out[0, prompt_len:], skip_special_tokens=True)
        try:
            # strict=False: the grammar lets raw control characters into strings, which JSON forbids.
            return schema.model_validate(json.loads(text, strict=False))
        except json.JSONDecodeError as e:
            raise RunError(
                f"{self}: the answer is not JSON (cut off at max_new_tokens={self.max_new_tokens}?): {e}"
            ) from None
        except ValidationError as e:
            raise RunError(
                f"{self}: the answer does not match {schema.__name__} (cut off at max_new_tokens="
                f"{self.max_new_tokens}? bound the schema's lengths): {_first_error(e)}"
            ) from None

    def _grammar(self, schema: type[BaseModel]) -> Any:
        key = f"{schema.__module__}.{schema.__qualname__}"
        if key not in self._grammars:
            self._grammars[key] = self._compiler.compile_json_schema(schema, any_whitespace=False)
        return self._grammars[key]

    def _inputs(self, messages: list[dict[str, Any]], images: list[Image.Image]) -> dict[str, Any]:
        template = {"add_generation_prompt": True, "return_dict": True, "return_tensors": "pt"}
        if self.processor is None:
            inputs = self.tokenizer.apply_chat_template(_text_only(messages), tokenize=True, **template)
        else:
            inputs = self.processor.apply_chat_template(
                _with_images(messages, images), tokenize=True, **template
            )
        return {k: v.to(self.device) for k, v in inputs.items()}


def _first_error(e: ValidationError) -> str:
    first = e.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'the answer'}: {first['msg']}"[:300]


def _resolve(model: str) -> str:
    """A model folder (``~`` expanded), or a hub id that is already in the local cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PolicyError(f"transformers head: {path} has no config.json; it is not a model folder")
        return str(path)
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") != 1:
        raise PolicyError(
            f"transformers head: model {model!r} is not a folder (nor a hub id like 'org/name')"
        )
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(model, "config.json"), str):
        raise PolicyError(
            f"transformers head: {model!r} is not in the local Hugging Face cache and nothing is downloaded; "
            "download it first or give a folder"
        )
    return model


def _text_only(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**m, "content": _text_of(m.get("content", ""))} for m in messages]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content if part.get("type") == "text")


def _with_images(messages: list[dict[str, Any]], images: list[Image.Image]) -> list[dict[str, Any]]:
    """Processor-style content lists; the images go to the last user turn."""
    out = [{**m, "content": [{"type": "text", "text": _text_of(m.get("content", ""))}]} for m in messages]
    if images:
        last_user = max((i for i, m in enumerate(out) if m.get("role") == "user"), default=None)
        if last_user is None:
            out.append({"role": "user", "content": []})
            last_user = len(out) - 1
        out[last_user]["content"] = [
            *({"type": "image", "image": i} for i in images),
            *out[last_user]["content"],
        ]
    return out
