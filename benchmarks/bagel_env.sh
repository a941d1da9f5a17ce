#!/usr/bin/env bash
# A CPU environment where the public BAGEL code imports, for the BAGEL adapter and trainee tests.
#
#   benchmarks/bagel_env.sh ~/.cache/bagel-check       # then:
#   STROKEAGENT_BAGEL_CHECKOUT=~/.cache/bagel-check/Bagel \
#     PYTHONPATH=~/.cache/bagel-check/shim ~/.cache/bagel-check/venv2/bin/pytest \
#     tests/test_unified_bagel.py tests/test_train_bagel.py -q
#
# BAGEL (https://github.com/ByteDance-Seed/Bagel) is not on PyPI and pins transformers 4.49
# (it imports transformers.modeling_attn_mask_utils) and a torch/torchvision pair; the project's
# own venv has torch 2.13+cpu and transformers 5, so BAGEL gets a venv of its own. torch 2.5.1 and
# torchvision 0.20.1 are BAGEL's requirements.txt pins; PyPI's Linux torch is a CUDA build (about
# 3 GB of nvidia-* wheels) and runs on CPU. flash-attn (CUDA only) is replaced by a stand-in that
# computes the same varlen attention with torch's SDPA: `shim/flash_attn/__init__.py`, written here.
# Measured (2026-11-26, 2 shared cores): about 6 minutes from scratch, 5.9 GB on disk; 50 s re-run.
set -euo pipefail
DIR="${1:-$HOME/.cache/bagel-check}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$DIR"
if [ ! -f "$DIR/Bagel/inferencer.py" ]; then
    git clone https://github.com/ByteDance-Seed/Bagel "$DIR/Bagel"
    git -C "$DIR/Bagel" checkout 056b5fd  # the commit the check ran against (docs/bagel-check.md)
fi
python3 -m venv "$DIR/venv2"
"$DIR/venv2/bin/pip" install --index-url https://pypi.org/simple \
    torch==2.5.1 torchvision==0.20.1 transformers==4.49.0 accelerate safetensors einops sentencepiece \
    "numpy<2.3" scipy pyarrow opencv-python-headless pyyaml \
    pydantic langgraph langgraph-checkpoint-sqlite aiosqlite pillow typer rich datasets pytest \
    "huggingface-hub>=0.26,<1.0"  # transformers 4.49 refuses hub 1.x, which a bare `datasets` pulls
"$DIR/venv2/bin/pip" install --no-deps -e "$REPO"

mkdir -p "$DIR/shim/flash_attn"
cat > "$DIR/shim/flash_attn/__init__.py" <<'EOF'
"""CPU stand-in for flash_attn.flash_attn_varlen_func (BAGEL imports it): per-sequence SDPA."""
import torch
import torch.nn.functional as F


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=False, **kw):
    out = []
    for i in range(len(cu_seqlens_q) - 1):
        qs, qe = int(cu_seqlens_q[i]), int(cu_seqlens_q[i + 1])
        ks, ke = int(cu_seqlens_k[i]), int(cu_seqlens_k[i + 1])
        qi, ki, vi = q[qs:qe].transpose(0, 1), k[ks:ke].transpose(0, 1), v[ks:ke].transpose(0, 1)
        if ki.shape[0] != qi.shape[0]:  # grouped-query attention
            rep = qi.shape[0] // ki.shape[0]
            ki, vi = ki.repeat_interleave(rep, 0), vi.repeat_interleave(rep, 0)
        mask = None
        if causal:  # flash-attn aligns the causal mask to the bottom right (queries are the last keys)
            lq, lk = qi.shape[1], ki.shape[1]
            mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(lk - lq)
        out.append(F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask).transpose(0, 1))
    return torch.cat(out, 0)
EOF
echo "ready: $DIR/venv2 (PYTHONPATH=$DIR/shim for flash_attn)"
