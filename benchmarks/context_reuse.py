"""Context reuse: tokens prefilled over a 3-step process trajectory, shared context against re-encoding.

    $ python benchmarks/context_reuse.py                 # tiny random-weight Janus, CPU
    $ python benchmarks/context_reuse.py --size pro-1b   # Janus-Pro-1B-sized random weights (needs a GPU)

Two runs of the same policy, seed and model:

- **shared**: the process stages keep the model's KV cache between stages, so
  each stage prefills only what it adds;
- **re-encode**: ``ProcessStages.max_live = 0`` drops the cache after every
  stage, so each stage rebuilds it from the trajectory first, as a model without
  a kept context must (the rebuild replays the generated text one token a forward
  to stay bit-exact; a stateless server would encode it as one chunk: same token
  count, faster).

Both must give the same final image bytes (the benchmark checks it). Reported:
tokens prefilled, tokens through the model (prefilled + generated + replayed),
and seconds; then the shared run's text and image tokens per second: tokens
generated over the seconds of the stages that wrote them (plan and reflect write
text, draft and refine paint), so prefills and the VQ decode are in the time.
``benchmarks/gpu.py`` times the bare decoding beside transformers' own
``generate``. ``--decode`` picks the Janus backend's decode mode. The seed is the
first from 0 whose trajectory has 3 painted steps (a random model may close the
process early).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from arguments import torch_device

import strokeagent
from strokeagent.extras import ExtraMissing, require
from strokeagent.testing.unified import build_tiny_janus, tiny_process_policy, write_backend
from strokeagent.unified.janus import DECODES


def pro_1b_config():  # -> JanusConfig with Janus-Pro-1B's shapes
    from transformers import JanusConfig

    from strokeagent.testing.unified import SPECIALS

    text = {"model_type": "llama", "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 5632,
            "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
            "max_position_embeddings": 16384, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}  # fmt: skip
    vision = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 384,
              "patch_size": 16, "projection_dim": 2048, "num_image_tokens": 576}  # fmt: skip
    vq = {"num_embeddings": 16384, "embed_dim": 8, "projection_dim": 2048, "image_token_embed_dim": 2048}
    return JanusConfig(
        text_config=text, vision_config=vision, vq_config=vq, image_token_id=SPECIALS.index(SPECIALS[3])
    )


def build(size: str, folder: Path, device: str = "cpu") -> Path:
    """A random-weight Janus folder: ``tiny`` or Janus-Pro-1B's shapes in bfloat16, initialised on ``device``."""
    if size == "tiny":
        return build_tiny_janus(folder)
    import torch
    from transformers import JanusForConditionalGeneration, JanusProcessor
    from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

    from strokeagent.testing.unified import tiny_janus_tokenizer

    torch.manual_seed(0)
    with torch.device(device):
        model = JanusForConditionalGeneration(pro_1b_config()).to(torch.bfloat16)
    processor = JanusProcessor(image_processor=JanusImageProcessorPil(size={"height": 384, "width": 384}, min_size=14),
                               tokenizer=tiny_janus_tokenizer(), num_image_tokens=576)  # fmt: skip
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    del model  # the caller loads it again from the folder
    return folder


def run(policy, seed: int, out: Path, rebuild: bool):  # -> (trajectory, seconds)
    policy.stage("plan").max_live = 0 if rebuild else 4
    start = time.perf_counter()
    traj = strokeagent.generate("a red apple left of a blue cup", policy=policy, seed=seed, out=out)
    return traj, time.perf_counter() - start


def totals(traj) -> dict[str, int]:
    prefilled = sum(t.prefilled_tokens or 0 for t in traj.timings)
    through = sum((t.prefilled_tokens or 0) + (t.generated_tokens or 0) for t in traj.timings)
    return {"prefilled": prefilled, "through": through}


def reencode_by_count(traj) -> int:
    """What re-encoding the trajectory in every stage would prefill, from the recorded usage: history + added."""
    records = [x for s in traj.steps for x in (s.plan, *s.reflections, *s.images)]
    usage = [r.meta["process"]["usage"] for r in records if "usage" in r.meta.get("process", {})]
    return sum(u["history"] + u["prefilled"] for u in usage)


def rates(traj) -> dict[str, tuple[int, float]]:
    """Per kind of output: (tokens generated, seconds of the stages that generated them)."""
    kinds = {"plan": "text", "reflect": "text", "draft": "image", "refine": "image"}
    out = {"text": (0, 0.0), "image": (0, 0.0)}
    for t in traj.timings:
        if t.stage in kinds and t.generated_tokens:
            tokens, seconds = out[kinds[t.stage]]
            out[kinds[t.stage]] = (tokens + t.generated_tokens, seconds + t.seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=["tiny", "pro-1b"], default="tiny")
    parser.add_argument("--device", type=torch_device, default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--decode", choices=DECODES, default="dynamic", help="the Janus backend's decode mode"
    )
    args = parser.parse_args()
    try:
        require("transformers", "benchmarks/context_reuse.py", modules=("torch", "transformers"))
    except ExtraMissing as e:
        raise SystemExit(f"error: {e}") from None
    # The model's files are gigabytes at Janus-Pro-1B size: gone when the run ends, however it ends.
    with tempfile.TemporaryDirectory(prefix="context-reuse-") as tmp:
        measure(args, Path(tmp))


def measure(args: argparse.Namespace, root: Path) -> None:
    folder = build(args.size, root / "model", args.device)
    backend = write_backend(folder, root / "backend.toml")
    text = backend.read_text() + f'decode = "{args.decode}"\n'
    if args.device != "cpu" or args.size != "tiny":
        text += f'device = "{args.device}"\n' + ('dtype = "bfloat16"\n' if args.size != "tiny" else "")
    backend.write_text(text)
    policy = tiny_process_policy(backend, max_steps=3, max_refines=1)
    for seed in range(20):
        shared, shared_s = run(policy, seed, root / f"shared-{seed}", rebuild=False)
        painted = [s for s in shared.steps if not s.plan.meta["process"].get("closed")]
        if len(painted) == 3:
            break
    else:
        raise SystemExit("no seed below 20 gave 3 painted steps")
    again, again_s = run(policy, seed, root / f"reencode-{seed}", rebuild=True)
    assert again.final_image.sha256 == shared.final_image.sha256, "re-encoding changed the bytes"
    a, b = totals(shared), totals(again)
    formula = reencode_by_count(shared)
    print(
        f"model: {args.size} random-weight Janus, seed {seed}, {len(shared.timings)} stages, 3 steps"
    )
    print(f"{'':12}{'prefilled':>12}{'through model':>15}{'seconds':>10}")
    print(f"{'shared':12}{a['prefilled']:>12}{a['through']:>15}{shared_s:>10.2f}")
    print(f"{'re-encode':12}{b['prefilled']:>12}{b['through']:>15}{again_s:>10.2f}")
    print(f"re-encode by count (history + added, per stage): {formula} prefilled tokens")
    made = ", ".join(f"{kind} {n} tokens in {sec:.2f} s ({n / sec:.1f}/s)"
                     for kind, (n, sec) in rates(shared).items() if sec)  # fmt: skip
    print(f"shared, tokens a second of the stages that wrote them ({args.decode} decode): {made}")
    print(f"reuse saves {1 - a['prefilled'] / b['prefilled']:.0%} of prefill; same final bytes: yes")


if __name__ == "__main__":
    main()
