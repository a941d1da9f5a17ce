"""Text-head test doubles: a scripted head, and a tiny random-weight chat model built offline.

    >>> import asyncio
    >>> from pydantic import BaseModel
    >>> class Answer(BaseModel):
    ...     text: str
    >>> head = ScriptedTextHead([{"text": "hello"}])
    >>> asyncio.run(head.chat([{"role": "user", "content": "hi"}], schema=Answer))
    Answer(text='hello')
    >>> head.calls[0].schema.__name__
    'Answer'

``tiny_chat_model(folder)`` writes a 2-layer Qwen2 with a byte-level BPE tokenizer
trained in memory and a ChatML template (about 1 MB, a second to build): the real
transformers loading and generation code runs on it, and it writes nonsense.
``tiny_text_head()`` is the ``transformers`` head on it (backend kind ``tiny-text``).
``tiny_vision_model(folder)`` is the same idea for image-text-to-text: a tiny LLaVA (CLIP
vision tower, Llama text model, a processor that expands ``<image>``), so the head's vision
path runs for real.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class HeadCall:
    messages: list[dict[str, Any]]
    images: list[Any]
    schema: type[BaseModel]


class ScriptedTextHead:
    """Answers from a script, in order: dicts or models (validated into the schema asked for),
    exceptions (raised), or a callable ``(messages, images, schema) -> answer``.
    The last entry repeats once the script runs out. Every call is kept in ``calls``.
    """

    def __init__(self, script: Sequence[Any] | Callable[..., Any], vision: bool = True) -> None:
        self.script = script
        self.vision = vision
        self.calls: list[HeadCall] = []

    def __str__(self) -> str:
        return "text head scripted"

    async def chat(self, messages, images=(), *, schema):  # noqa: ANN001, ANN201 - the TextHead protocol
        self.calls.append(HeadCall([dict(m) for m in messages], list(images), schema))
        if callable(self.script):
            answer = self.script(messages, list(images), schema)
        else:
            answer = self.script[min(len(self.calls), len(self.script)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, BaseModel):
            answer = answer.model_dump()
        return schema.model_validate(answer)


_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = [
    "a red apple left of a blue cup and a dog below the cup",
    'draw the sky first, then the ground. {"instruction": "add a cat", "done": true, "ok": false}',
    "The picture shows two green chairs, a yellow umbrella and a black bird on a wooden table.",
]


def _bpe_tokenizer(special: list[str], chat_template: str) -> Any:
    """A byte-level BPE trained on a few sentences: every string can be written with it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=chat_template
    )


def _save_atomically(folder: Path, model: Any, processor: Any) -> None:
    """Save into a sibling, then rename: a reader never sees half a model."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}")
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    try:
        tmp.rename(folder)
    except OSError:  # another process built it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def tiny_chat_model(folder: str | Path, seed: int = 0) -> Path:
    """Build (or reuse) a tiny random-weight Qwen2 chat model in ``folder``; the same seed gives the same weights."""
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], _CHATML)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    _save_atomically(folder, Qwen2ForCausalLM(config), tokenizer)
    return folder


_CHATML_IMAGES = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_vision_model(folder: str | Path, seed: int = 0) -> Path:
    """Build (or reuse) a tiny random-weight LLaVA (32x32 images, 8x8 patches) with its processor in ``folder``."""
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    try:  # without torchvision, the PIL image processor (transformers 5 names it apart)
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor as ImageProcessor

    tokenizer = _bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"], _CHATML_IMAGES)
    processor = LlavaProcessor(
        image_processor=ImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token
        chat_template=_CHATML_IMAGES,
    )
    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    _save_atomically(folder, LlavaForConditionalGeneration(config), processor)
    return folder


def tiny_text_head(max_new_tokens: int = 1000, folder: str | None = None) -> Any:
    """The ``transformers`` head on the tiny chat model (built once under the cache)."""
    from strokeagent.backends.smollm2 import cache_dir
    from strokeagent.backends.transformers_head import TransformersHead

    path = tiny_chat_model(folder or cache_dir() / "tiny-qwen2-chat")
    return TransformersHead(model=str(path), max_new_tokens=max_new_tokens)
