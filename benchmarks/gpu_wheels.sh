#!/usr/bin/env bash
# Wheels for benchmarks/gpu.py on a bare GPU machine (torch, transformers and no network there).
#
#     bash benchmarks/gpu_wheels.sh        # here, where PyPI is reachable; fills benchmarks/wheels/ (git-ignored)
#
# The GPU image (python 3.12, x86-64) has torch, numpy, pillow, accelerate, safetensors, httpx, rich, typer...;
# what it lacks is downloaded for it: this project's wheel, diffusers, pydantic, langgraph and its SQLite
# checkpointer with their dependencies, and transformers pinned to this checkout's version (janus.py uses
# its `cache=` argument). torch is never pulled: nothing below depends on it. The command to run there
# is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEST=benchmarks/wheels
rm -rf "$DEST" && mkdir -p "$DEST"
TRANSFORMERS=$($PY -c 'import transformers; print(transformers.__version__)')
DIFFUSERS=$($PY -c 'import diffusers; print(diffusers.__version__)')
$PY -m pip wheel -q --no-deps -w "$DEST" .
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
        --platform manylinux_2_27_x86_64 --platform manylinux1_x86_64)
$PY -m pip download -q "${TARGET[@]}" -d "$DEST" \
    "diffusers==$DIFFUSERS" "transformers==$TRANSFORMERS" "pydantic>=2.7" "langgraph>=1.0" \
    "langgraph-checkpoint-sqlite>=3.0" "typer>=0.12" "rich>=13" "pillow>=10" "numpy>=1.26"
# A sampling profiler for a second, diagnostic run (where the time goes in every thread, without pausing them).
$PY -m pip download -q "${TARGET[@]}" -d "$DEST" py-spy
# Already in the GPU image, at versions that satisfy every requirement above: leave them out (size).
for name in numpy pillow; do rm -f "$DEST"/${name}-*.whl; done
du -sh "$DEST"
ls "$DEST"
cat <<CMD

On the GPU machine (from the repository root; carry benchmarks/wheels):
  python3 -m pip install -q --no-index --find-links benchmarks/wheels strokeagent diffusers==$DIFFUSERS transformers==$TRANSFORMERS && PYTHONUNBUFFERED=1 python3 benchmarks/gpu.py --out \$OUT/gpu.json
(add --profile \$OUT/profile --within 600 for torch.profiler tables, about 30 s more: without --within the Janus
tables are skipped for time; --decode dynamic,compiled times the plain decode loop too, about 66 s more at
Janus-Pro-1B size on an H200; text's compile is timed when the image step's compile and first image leave it
inside --within, 330 s by default, else text stays in the plain loop and 'skipped' says so.)
The diffusion figures at issue 16's 30 denoising steps (the default is 20, so that the whole run fits 6 minutes):
  PYTHONUNBUFFERED=1 python3 benchmarks/gpu.py --steps 30 --skip-unified --out \$OUT/gpu-30-steps.json
The single trajectory's framework time, split, in turns with variants (about 75 s after the wheels):
  PYTHONUNBUFFERED=1 python3 benchmarks/trajectory_gaps.py 30
A diagnostic run under the sampling profiler, every thread, with text's compile:
  python3 -m pip install -q --no-index --find-links benchmarks/wheels py-spy && py-spy record --nonblocking --threads --format raw -o \$OUT/spy.txt -- python3 benchmarks/gpu.py --within 600 --out \$OUT/gpu.json
CMD
