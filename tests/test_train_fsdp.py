"""FSDP (version 2, torch's ``fully_shard``) through accelerate's plugin, on two CPU processes.

accelerate 1.x turns FSDP on for GPUs and other accelerators only: ``AcceleratorState`` sets
``DistributedType.FSDP`` in its accelerator-only branch, so on CPUs ``accelerate launch --use_fsdp``
gives processes that each run alone. The trainer refuses that launch in one line (first test). The
second test opens that one gate (``SHIM`` below, the assignment accelerate makes for GPUs) and
runs everything else as a GPU user would: ``accelerate launch --use_fsdp --fsdp_version 2 ...``,
accelerate's FSDP2 wrapping, sharded ``save_state``/``load_state``, the gathered full state dict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
pytest.importorskip("datasets")

from safetensors.torch import load_file  # noqa: E402

from strokeagent.data import build_dataset  # noqa: E402
from strokeagent.train import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")

# What `accelerate launch` is given; the GPU command in docs/training.md differs by --num_processes only.
FSDP_FLAGS = [
    "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
    "--use_fsdp", "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
    "--fsdp_state_dict_type", "SHARDED_STATE_DICT", "--fsdp_reshard_after_forward", "true",
]  # fmt: skip

SHIM = """\
import os, sys
import accelerate.state
from accelerate.utils import DistributedType

os.environ["ACCELERATE_USE_CPU"] = "1"  # what --cpu sets; `accelerate launch` refuses --cpu with --use_fsdp
make_state = accelerate.state.AcceleratorState.__init__

def open_fsdp_to_cpu(self, *args, fsdp_plugin=None, **kwargs):
    make_state(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    # The assignment AcceleratorState makes in its GPU/accelerator branch, made for CPU processes.
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = accelerate.state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin

accelerate.state.AcceleratorState.__init__ = open_fsdp_to_cpu
from strokeagent.cli import main
sys.exit(main())
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny random Janus and a small data set of all three subsets (2 prompts)."""
    from strokeagent.testing.unified import build_tiny_janus

    root = tmp_path_factory.mktemp("fsdp")
    build_dataset("geneval:2", root / "data", seed=0)
    return build_tiny_janus(root / "janus"), root / "data"


def _config(world, path: Path, out: Path) -> Path:
    model, data = world
    path.write_text(f'model = "{model}"\ndata = "{data}"\nout = "{out}"\nsteps = 4\nmicro_batch = 1\n'
                    "max_tokens = 1024\nlr = 3e-3\nsave_every = 2\nlog_every = 1\n")  # fmt: skip
    return path


def _launch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", *FSDP_FLAGS, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)


@pytest.mark.slow  # ~11 s alone: two processes start torch and accelerate, then stop
def test_fsdp_on_cpu_processes_is_refused_in_one_line(world, tmp_path):
    cfg = _config(world, tmp_path / "fsdp.toml", tmp_path / "run")
    done = _launch("-m", "strokeagent.cli", "train", str(cfg))
    assert done.returncode != 0
    error = (
        "error: FSDP was asked for, but accelerate set up NO on cpu with 1 process(es): accelerate runs FSDP "
        "only on GPUs (or other accelerators); on CPUs use DDP (ACCELERATE_USE_CPU=1 torchrun "
        "--nproc_per_node N ...), see docs/training.md"
    )
    assert done.stderr.count(error) == 2, done.stderr[-2000:]  # each process, before any training
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # ~70 s (105 s on a busy 2-core machine): two 2-process launches and one reference run
def test_fsdp2_trains_saves_and_resumes_like_one_process(world, tmp_path):
    cfg = _config(world, tmp_path / "fsdp.toml", tmp_path / "run")
    shim = tmp_path / "fsdp_on_cpu.py"
    shim.write_text(SHIM)
    first = _launch(str(shim), "train", str(cfg), "--steps", "2")  # as a run killed after its step-2 save
    assert first.returncode == 0, first.stderr[-3000:]
    state = tmp_path / "run" / "checkpoint-000002" / "state"
    # accelerate's sharded state: one model and one optimizer shard file per process.
    assert sorted(p.name for p in (state / "optimizer_0").glob("*.distcp")) == [
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    assert sorted(p.name for p in (state / "pytorch_model_fsdp_0").glob("*.distcp")) == [
        "__0_0.distcp",
        "__1_0.distcp",
    ]

    resumed = _launch(str(shim), "train", str(cfg))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step 3/4" in resumed.stderr and "step 2/4" not in resumed.stderr  # it went on from step 2
    assert resumed.stdout.count("step 4: checkpoint") == 1  # only the main process reports

    # One process accumulating 2 micro-batches sees the same 2 rows per step as 2 processes of 1 row.
    model, data = world
    alone = train(TrainConfig(model=str(model), data=str(data), out=str(tmp_path / "one"), steps=4,
                              micro_batch=1, grad_accum=2, max_tokens=1024, lr=3e-3))  # fmt: skip
    fsdp_dir = tmp_path / "run" / "checkpoint-000004"
    fsdp, one, start = (load_file(d / "model.safetensors") for d in (fsdp_dir, alone.checkpoint, model))
    # The full state dict, gathered: every tensor at full size, and the same bits as one process
    # (averaging 2 gradients is exact in binary floating point).
    assert fsdp.keys() == one.keys() == start.keys()
    assert all(torch.equal(fsdp[k], one[k]) for k in fsdp)
    assert not all(torch.equal(fsdp[k], start[k]) for k in fsdp)
    history = json.loads((fsdp_dir / "trainer.json").read_text())["history"]
    assert [h["loss"] for h in history] == [h["loss"] for h in alone.history]
    assert history[-1]["loss"] < history[0]["loss"]

    # The janus backend loads the folder as it is.
    from strokeagent.unified.janus import JanusModel

    assert JanusModel(str(fsdp_dir)).num_image_tokens > 0
