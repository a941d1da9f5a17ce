"""Training throughput on process data: samples/s, tokens/s, and how much padding packing saves.

    $ python benchmarks/train_throughput.py                      # tiny random Janus on CPU
    $ python benchmarks/train_throughput.py --hidden 2048 --layers 24 --bf16   # on a GPU: ~Janus-Pro-1B's LM

Builds a data set with the stroke canvas (``--prompts`` GenEval-style rows, all
three subsets), a random-weight Janus of the given language-model size
(vision and VQ parts as in the tiny test model; the character-level tokenizer
keeps the vocabulary at 128), and trains ``--steps`` optimizer steps with the
real trainer. Reports the trainer's own throughput over the steps after the
first (warm-up) and the padding share of packed rows against one stream per
row padded to the longest (what a batch without packing wastes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from arguments import positive_int


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=positive_int, default=8)
    ap.add_argument("--steps", type=positive_int, default=10)
    ap.add_argument("--micro-batch", type=positive_int, default=2)
    ap.add_argument("--max-tokens", type=positive_int, default=2048)
    ap.add_argument("--hidden", type=positive_int, default=32)
    ap.add_argument("--layers", type=positive_int, default=2)
    ap.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    import torch
    from transformers import JanusForConditionalGeneration, JanusProcessor
    from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

    from strokeagent.data import build_dataset
    from strokeagent.testing.unified import tiny_janus_config, tiny_janus_tokenizer
    from strokeagent.train import TrainConfig, train
    from strokeagent.train.packing import padding_share
    from strokeagent.train.trainer import build_trainee, training_rows

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        build_dataset(f"geneval:{args.prompts}", root / "data", seed=0)
        data_s = time.perf_counter() - t
        torch.manual_seed(0)
        model = JanusForConditionalGeneration(tiny_janus_config(hidden=args.hidden, layers=args.layers))
        processor = JanusProcessor(
            image_processor=JanusImageProcessorPil(size={"height": 32, "width": 32}, min_size=8),
            tokenizer=tiny_janus_tokenizer(),
            num_image_tokens=16,
        )
        model.save_pretrained(root / "janus")
        processor.save_pretrained(root / "janus")
        params = sum(p.numel() for p in model.parameters())
        del model

        cfg = TrainConfig(model=str(root / "janus"), data=str(root / "data"), out=str(root / "run"),
                          steps=args.steps, micro_batch=args.micro_batch, max_tokens=args.max_tokens,
                          lr=1e-4, save_every=10**9, mixed_precision="bf16" if args.bf16 else "no")  # fmt: skip
        trainee = build_trainee(cfg)
        rows, samples = training_rows(trainee, cfg)
        streams = [s for row in rows for s in row]
        longest = max(len(s) for s in streams)
        unpacked = padding_share([[s] for s in streams], longest)
        del trainee

        warm = train(cfg.model_copy(update={"steps": 1}))  # compile kernels, fill caches
        result = train(cfg)  # resumes after the warm-up step: the figures cover steps 2..N
        device = "cuda" if torch.cuda.is_available() else "cpu"
        figures = {
            "device": torch.cuda.get_device_name()
            if device == "cuda"
            else f"cpu x{torch.get_num_threads()} threads",
            "parameters": params,
            "samples": samples,
            "streams": len(streams),
            "rows": len(rows),
            "data_build_s": round(data_s, 2),
            "samples_per_s": round(result.samples_per_s, 3),
            "tokens_per_s": round(result.tokens_per_s, 1),
            "padding_packed": round(result.padding, 4),
            "padding_unpacked": round(unpacked, 4),
            "loss_first": round(warm.history[0]["loss"], 4),
            "loss_last": round(result.history[-1]["loss"], 4),
        }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
