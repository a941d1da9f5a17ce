"""A conformance suite for critics, and tiny random-weight detectors and CLIP built offline.

    >>> class TestMyCritic(CriticConformance):          # in your tests
    ...     def make_critic(self):
    ...         return MyCritic()
    ...     def cases(self):
    ...         return [(image, "a photo of a cup", None)]

``CriticConformance`` is a pytest mixin: subclass it as ``Test...``, give it a
critic and a few ``(image, prompt, scene)`` cases, and pytest runs every check a
strokeagent critic must pass (the verdict's shape and range, violations exactly
when wrong, determinism, JSON round trip, concurrency, use as a reflect stage).
Cases listed in ``good_cases`` / ``bad_cases`` must also be judged correct /
wrong.

The builders write tiny random-weight models with ``save_pretrained`` into a
folder, so tests load them by path through the same code as real checkpoints:
``build_tiny_clip``, ``build_tiny_detr``, ``build_tiny_owlv2``,
``build_tiny_mask2former``. Nothing is downloaded; tokenizers and processors
are built in memory.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from strokeagent.critics import Critic, Verdict
from strokeagent.kinds.critic import CriticReflector

Case = tuple[Any, str, Any]  # (image or Canvas, prompt, scene or None)


class CriticConformance:
    """Pytest mixin: every check a critic must pass. Override ``make_critic`` and ``cases``."""

    def make_critic(self) -> Critic:
        raise NotImplementedError("return the critic under test")

    def cases(self) -> list[Case]:
        raise NotImplementedError("return a few (image, prompt, scene) cases")

    def good_cases(self) -> list[Case]:
        """Cases the critic must judge correct (optional)."""
        return []

    def bad_cases(self) -> list[Case]:
        """Cases the critic must judge wrong (optional)."""
        return []

    # -- the checks ------------------------------------------------------------

    def _all(self) -> list[Case]:
        return [*self.cases(), *self.good_cases(), *self.bad_cases()]

    def _score(self, critic: Critic, case: Case) -> Verdict:
        image, prompt, scene = case
        return asyncio.run(critic.score(image, prompt, scene=scene))

    def test_is_a_critic(self) -> None:
        critic = self.make_critic()
        assert isinstance(critic, Critic), "a critic needs `async def score(image, prompt, *, scene=None)`"
        assert asyncio.iscoroutinefunction(critic.score)

    def test_verdicts_are_well_formed(self) -> None:
        critic = self.make_critic()
        for case in self._all():
            verdict = self._score(critic, case)
            assert isinstance(verdict, Verdict)
            assert 0.0 <= verdict.score <= 1.0
            assert verdict.critic, "name the critic in the verdict"
            # Violations explain a wrong verdict, and only a wrong one.
            assert bool(verdict.violations) == (not verdict.correct), verdict
            assert all(v.message.strip() for v in verdict.violations)
            if verdict.correct:
                assert verdict.score > 0.0

    def test_deterministic(self) -> None:
        critic = self.make_critic()
        for case in self._all():
            assert self._score(critic, case) == self._score(critic, case)

    def test_verdict_json_round_trip(self) -> None:
        critic = self.make_critic()
        for case in self._all():
            verdict = self._score(critic, case)
            assert Verdict.model_validate_json(verdict.model_dump_json()) == verdict

    def test_concurrent_calls_agree(self) -> None:
        critic = self.make_critic()
        cases = self._all()

        async def all_at_once() -> list[Verdict]:
            return list(await asyncio.gather(*(critic.score(i, p, scene=s) for i, p, s in cases)))

        assert asyncio.run(all_at_once()) == [self._score(critic, c) for c in cases]

    def test_good_and_bad_cases(self) -> None:
        critic = self.make_critic()
        for case in self.good_cases():
            verdict = self._score(critic, case)
            assert verdict.correct, f"{case[1]!r} should pass: {verdict.reason}"
        for case in self.bad_cases():
            assert not self._score(critic, case).correct, f"{case[1]!r} should fail"

    def test_works_as_a_reflect_stage(self) -> None:
        from strokeagent.core.stages import Canvas
        from strokeagent.core.state import Plan

        reflector = CriticReflector(self.make_critic())
        for image, prompt, _ in self._all():
            canvas = image if isinstance(image, Canvas) else Canvas(image, {})
            plan = Plan(instruction=prompt, description=prompt, done=True)
            reflection = asyncio.run(reflector.reflect(_View(prompt), plan, canvas))
            verdict = self._score(self.make_critic(), (image, prompt, None))
            assert reflection.ok == verdict.correct
            assert reflection.image_conflicts == [v.message for v in verdict.violations]


class _View:
    """Just enough of a ``TrajectoryView`` for a reflect call outside a run."""

    def __init__(self, prompt: str) -> None:
        self.prompt = prompt


# -- tiny models --------------------------------------------------------------------------------


def _byte_symbols() -> list[str]:
    # GPT-2's reversible byte-to-character map: printable bytes as themselves, the rest shifted past 255.
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def tiny_clip_tokenizer(max_length: int = 16) -> Any:
    """A byte-level CLIP tokenizer with no merges: every character is a token."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for s in _byte_symbols():
            vocab[s + suffix] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _text_config(tokenizer: Any, hidden: int = 32) -> dict[str, Any]:
    return {
        "vocab_size": len(tokenizer.get_vocab()),
        "hidden_size": hidden,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": tokenizer.model_max_length,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    }


_VISION = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
}


def _coco_labels() -> dict[int, str]:
    from strokeagent.scene.vocab import COCO_CLASSES

    return dict(enumerate(COCO_CLASSES))


def _save(model: Any, processor: Any, path: str | Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_tiny_clip(path: str | Path, seed: int = 0) -> Path:
    """A 32-wide, 2-layer CLIP (32 px images, 16-token texts) and its processor, saved in ``path``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    config = CLIPConfig(text_config=_text_config(tokenizer), vision_config=_VISION, projection_dim=16)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    return _save(CLIPModel(config), processor, path)


def build_tiny_owlv2(path: str | Path, seed: int = 0) -> Path:
    """An OWLv2 with 16 patch boxes (32 px images, patch 8), saved in ``path``."""
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil, Owlv2Processor

    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    config = Owlv2Config(text_config=_text_config(tokenizer), vision_config=_VISION, projection_dim=32)
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    return _save(Owlv2ForObjectDetection(config), processor, path)


def build_tiny_detr(path: str | Path, seed: int = 0, num_queries: int = 5) -> Path:
    """A DETR (tiny ResNet backbone, one encoder and decoder layer) with COCO's 80 labels."""
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessorPil, ResNetConfig

    labels = _coco_labels()
    torch.manual_seed(seed)
    backbone = ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        out_features=["stage2"],
    )
    config = DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=backbone,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=num_queries,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    processor = DetrImageProcessorPil(size={"shortest_edge": 32, "longest_edge": 64})
    return _save(DetrForObjectDetection(config), processor, path)


def build_tiny_mask2former(path: str | Path, seed: int = 0, num_queries: int = 4) -> Path:
    """A Mask2Former (tiny Swin backbone) with COCO's 80 labels, saved in ``path``."""
    import torch
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessorPil,
        SwinConfig,
    )

    labels = _coco_labels()
    torch.manual_seed(seed)
    backbone = SwinConfig(
        image_size=32,
        patch_size=4,
        embed_dim=32,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=2,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=backbone,
        use_pretrained_backbone=False,
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=32,
        encoder_feedforward_dim=32,
        num_queries=num_queries,
        common_stride=4,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    processor = Mask2FormerImageProcessorPil(size={"shortest_edge": 32, "longest_edge": 64}, size_divisor=32)
    return _save(Mask2FormerForUniversalSegmentation(config), processor, path)
