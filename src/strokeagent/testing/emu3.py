"""A tiny random-weight Emu3, built offline and saved as a real checkpoint folder.

    >>> folder = build_tiny_emu3(tmp_path / "tiny-emu3")          # doctest: +SKIP
    >>> Emu3Model(str(folder), size=32).size                       # doctest: +SKIP
    32

The folder holds what ``BAAI/Emu3-Gen-hf`` holds (config with its vocabulary
map, safetensors weights, processor and tokenizer files), so tests load it
through the same ``Emu3Model`` code users run on real checkpoints. The tokenizer
is character-level, from an in-memory vocabulary: Emu3's special tokens (named
as in the real tokenizer), every printable ASCII character, and one
``<|visual token000000|>`` per VQ code. Sizes: text 32 hidden, 2 layers; a
64-code VQ with an 8× spatial factor, so a 32×32 image is a 4×4 grid of codes
(4 rows of 4 codes and an end-of-line: 20 tokens). Building takes about a second
(after the transformers import); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from strokeagent.testing.unified import write_backend

#: Emu3's own names; the roles are the tokenizer's (and the processor's) attribute names.
ROLES = {
    "bos_token": "<|extra_203|>",
    "eos_token": "<|extra_204|>",
    "pad_token": "<|endoftext|>",
    "image_token": "<image>",
    "boi_token": "<|image start|>",
    "eoi_token": "<|image end|>",
    "image_wrapper_token": "<|image token|>",
    "eof_token": "<|extra_201|>",
}
EOL = "<|extra_200|>"  # ends each row of visual tokens; the model finds it by this name
CODES = 64


def tiny_emu3_tokenizer():  # -> PreTrainedTokenizerFast
    """A character-level tokenizer with Emu3's special and visual tokens, built in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    visual = [f"<|visual token{code:06d}|>" for code in range(CODES)]
    words = [*ROLES.values(), EOL, *(chr(i) for i in range(32, 127)), "\n", *visual]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="?"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    tok.decoder = decoders.Fuse()
    named = {role: ROLES[role] for role in ("bos_token", "eos_token", "pad_token")}
    extra = {role: token for role, token in ROLES.items() if role not in named}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **named, extra_special_tokens=extra)
    fast.add_tokens([EOL, *visual], special_tokens=True)  # whole tokens, never split into characters
    return fast


def tiny_emu3_config(vocabulary: dict[str, int], hidden: int = 32, layers: int = 2):  # -> Emu3Config
    from transformers import Emu3Config

    ids = {f"{role}_id": vocabulary[ROLES[role]] for role in ("bos_token", "eos_token", "pad_token")}
    text = dict(vocab_size=len(vocabulary), hidden_size=hidden, intermediate_size=2 * hidden, **ids,
                num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, attention_dropout=0.0)  # fmt: skip
    # Four resolutions (three 2× down/up-samplings): an 8× spatial factor, as in Emu3's VQ.
    vq = {
        "codebook_size": CODES,
        "embed_dim": 4,
        "latent_channels": 4,
        "base_channels": 32,
        "channel_multiplier": [1, 1, 1, 1],
        "num_res_blocks": 1,
        "attn_resolutions": [],
        "hidden_size": 32,
    }
    return Emu3Config(text_config=text, vq_config=vq, vocabulary_map=vocabulary)


def build_tiny_emu3(folder: str | Path, seed: int = 0) -> Path:
    """Build a tiny random-weight Emu3 with ``seed`` and save it (weights, processor) to ``folder``."""
    import torch
    from transformers import Emu3ForConditionalGeneration, Emu3ImageProcessor, Emu3Processor

    folder = Path(folder)
    tokenizer = tiny_emu3_tokenizer()
    torch.manual_seed(seed)
    model = Emu3ForConditionalGeneration(tiny_emu3_config(tokenizer.get_vocab())).eval()
    images = Emu3ImageProcessor(min_pixels=16 * 16, max_pixels=64 * 64, spatial_factor=8)
    model.save_pretrained(folder)
    Emu3Processor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def write_emu3_backend(model_folder: str | Path, toml_path: str | Path) -> Path:
    """A backend description for the tiny Emu3: ``kind = "emu3"``, its ``path`` and its 32 px ``size``."""
    toml_path = write_backend(model_folder, toml_path, kind="emu3")
    toml_path.write_text(toml_path.read_text(encoding="utf-8") + "size = 32\n", encoding="utf-8")
    return toml_path


#: ``python -m strokeagent.testing.emu3`` builds the tiny Emu3 here (a description: ``write_emu3_backend``).
DEFAULT_TINY_EMU3 = Path("~/.cache/strokeagent/tiny-emu3").expanduser()

if __name__ == "__main__":
    print(build_tiny_emu3(DEFAULT_TINY_EMU3))
