"""The trainer: losses by hand, exact packing, the loss falls, resume equals uninterrupted, the checkpoint is a policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
pytest.importorskip("datasets")

from safetensors.torch import load_file  # noqa: E402

from strokeagent.data import build_dataset  # noqa: E402
from strokeagent.errors import TrainError  # noqa: E402
from strokeagent.train import TrainConfig, load_config, train  # noqa: E402
from strokeagent.train.losses import rectified_flow_loss, text_loss, vq_token_loss  # noqa: E402
from strokeagent.train.packing import Stream, pack, padding_share  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny random Janus and a small data set of all three subsets (2 prompts)."""
    from strokeagent.testing.unified import build_tiny_janus

    root = tmp_path_factory.mktemp("train")
    build_dataset("geneval:2", root / "data", seed=0)
    return build_tiny_janus(root / "janus"), root / "data"


def _cfg(world, out: Path, **kw) -> TrainConfig:
    model, data = world
    base = dict(
        model=str(model), data=str(data), out=str(out), steps=4, micro_batch=1, max_tokens=1024, lr=3e-3
    )
    return TrainConfig(**{**base, **kw})


def test_flow_matching_loss_matches_a_hand_computed_value():
    # Toy flow head: v = 2·x_t + t (per sample). Two samples of two latents.
    head = lambda x_t, t, cond: 2 * x_t + t.view(-1, 1)  # noqa: E731
    x0 = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
    noise = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    t = torch.tensor([0.5, 0.25])
    # x_t = (1-t)·x0 + t·noise: [[0.5, 0.0], [0.25, 1.75]];  v_pred = 2·x_t + t: [[1.5, 0.5], [0.75, 3.75]]
    # target ε - x0: [[-1, 2], [1, -1]];  squared errors: 6.25, 2.25, 0.0625, 22.5625 -> mean 7.78125
    assert float(rectified_flow_loss(head, x0, noise, t)) == pytest.approx(7.78125)


def test_token_losses_skip_unlabelled_positions():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    assert float(text_loss(logits, torch.tensor([-100, 0]))) == pytest.approx(
        float(torch.log1p(torch.exp(torch.tensor(-2.0))))
    )
    assert float(vq_token_loss(logits, torch.tensor([-100, -100]))) == 0.0


def test_packing_is_first_fit_decreasing_and_refuses_oversize():
    rows = pack([Stream(ids=[0] * n) for n in (3, 7, 2, 5)], max_tokens=8)
    assert [[len(s) for s in row] for row in rows] == [[7], [5, 3], [2]]
    assert padding_share(rows, 8) == pytest.approx(1 - 17 / 24)
    with pytest.raises(TrainError, match="more than max_tokens = 8"):
        pack([Stream(ids=[0] * 9)], max_tokens=8)


def test_a_packed_row_computes_what_its_streams_compute_alone(world):
    from strokeagent.data import load_samples
    from strokeagent.train.janus import JanusTrainee

    model, data = world
    trainee = JanusTrainee.from_pretrained(model)
    sample = next(s for s in load_samples(data) if s["subset"] == "multi_turn")
    reading, painting = trainee.all_streams([sample], data)[:2]
    assert (
        painting.kind == "painting"
        and sum(t != -100 for t in painting.image_targets) == trainee.num_image_tokens
    )
    with torch.no_grad():
        _, alone_r = trainee(trainee.collate([[reading]], 1536))
        _, alone_p = trainee(trainee.collate([[painting]], 1536))
        _, packed = trainee(trainee.collate([[painting, reading]], 1536))
    # Same values to float tolerance: the block-diagonal mask isolates the streams (summation order differs).
    assert float(packed["text"]) == pytest.approx(float(alone_r["text"]), rel=1e-5)
    assert float(packed["image"]) == pytest.approx(float(alone_p["image"]), rel=1e-5)
    assert alone_r["text_tokens"] > 0 and alone_p["image_tokens"] == trainee.num_image_tokens


def _data_loss(model_dir: Path, world) -> float:
    from strokeagent.data import load_samples
    from strokeagent.train.janus import JanusTrainee

    trainee = JanusTrainee.from_pretrained(model_dir)
    streams = trainee.all_streams(load_samples(world[1]), world[1])
    with torch.no_grad():
        return sum(float(trainee(trainee.collate([row], 1024))[0]) for row in pack(streams, 1024))


@pytest.mark.slow  # ~20 s alone, up to a minute on a busy 2-core machine
def test_the_loss_falls_and_the_checkpoint_runs_as_a_policy(world, tmp_path):
    from strokeagent.runs.api import generate
    from strokeagent.testing.unified import write_backend

    result = train(_cfg(world, tmp_path / "run", steps=24, lr=5e-3, image_weight=0.5))
    before, after = _data_loss(world[0], world), _data_loss(result.checkpoint, world)
    print(f"data loss before {before:.3f} after {after:.3f}")
    assert after < 0.8 * before, (before, after)
    assert result.tokens_per_s > 0 and 0 <= result.padding < 1

    # No conversion: the checkpoint folder is what the janus backend loads by path.
    backend = write_backend(result.checkpoint, tmp_path / "trained-janus.toml")
    policy = tmp_path / "trained.toml"
    stage = f'kind = "process"\nbackend = "{backend.as_posix()}"\nmax_text_tokens = 24\n'
    policy.write_text(
        'name = "trained"\n[loop]\norder = ["plan", "draft", "reflect", "refine"]\nmax_steps = 1\nmax_refines = 1\n'
        + "".join(f"[stages.{s}]\n{stage}" for s in ("plan", "draft", "reflect", "refine"))
    )
    traj = generate("a red apple", policy, seed=0, out=tmp_path / "gen")
    assert traj.final_image is not None and (traj.final_image.width, traj.final_image.height) == (32, 32)
    assert traj.steps[0].plan is not None


@pytest.mark.slow  # ~25 s alone: three short trainings
def test_a_resumed_run_equals_an_uninterrupted_one(world, tmp_path):
    straight = train(_cfg(world, tmp_path / "a", steps=4, grad_accum=2, save_every=2))
    first = train(_cfg(world, tmp_path / "b", steps=4, grad_accum=2, save_every=2), stop_after=2)
    assert first.step == 2 and first.checkpoint.name == "checkpoint-000002"
    resumed = train(_cfg(world, tmp_path / "b", steps=4, grad_accum=2, save_every=2))
    assert resumed.step == 4
    # Bitwise: on CPU the same ops on the same restored state (weights, AdamW moments, data order) give the same bits.
    a, b = (load_file(r.checkpoint / "model.safetensors") for r in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]
    assert json.loads((resumed.checkpoint / "trainer.json").read_text())["micro"] == 8


@pytest.mark.slow  # ~15 s
def test_lora_checkpoint_is_merged_and_keeps_its_adapter(world, tmp_path):
    from transformers import JanusForConditionalGeneration

    result = train(_cfg(world, tmp_path / "lora", steps=2, lora={"r": 4}, lr=1e-2))
    assert (result.checkpoint / "adapter" / "adapter_config.json").is_file()
    merged = JanusForConditionalGeneration.from_pretrained(result.checkpoint, local_files_only=True)
    base = JanusForConditionalGeneration.from_pretrained(world[0], local_files_only=True)
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], base.state_dict()[q])  # the adapter is merged in
    v = "model.vision_model.encoder.layers.0.self_attn.q_proj.weight"
    assert torch.equal(merged.state_dict()[v], base.state_dict()[v])  # the vision tower is untouched


def test_bad_config_is_one_line(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('model = "m"\ndata = "d"\nout = "o"\nsteps = 0\n')
    with pytest.raises(TrainError, match="steps: Input should be greater than or equal to 1"):
        load_config(path)
    path.write_text('model = "m"\ndata = "d"\nout = "o"\nlearning_rate = 1\n')
    with pytest.raises(TrainError, match="learning_rate: Extra inputs"):
        load_config(path)
    cfg = load_config(_write(tmp_path / "ok.toml", 'model = "m"\ndata = "d"\nout = "o"\n'))
    assert cfg.model == str((tmp_path / "m").resolve())
    with pytest.raises(TrainError, match="no model at"):
        train(cfg)


def test_the_trainee_is_looked_up_by_name_and_an_unknown_one_is_one_line(world, tmp_path):
    from strokeagent.train.config import trainee_class
    from strokeagent.train.janus import JanusTrainee

    assert TrainConfig(model="m", data="d", out="o").trainee == "janus"
    assert trainee_class("janus") is JanusTrainee
    assert trainee_class("strokeagent.train.janus:JanusTrainee") is JanusTrainee
    with pytest.raises(TrainError) as e:
        train(_cfg(world, tmp_path / "x", trainee="flux"))
    assert str(e.value) == (
        "training config: unknown trainee 'flux'; use one of bagel, janus, or 'package.module:Factory'"
    )
    assert not (tmp_path / "x").exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_cli_train_refuses_a_bad_config_in_one_line(cli, tmp_path):
    bad = _write(tmp_path / "train.toml", 'model = "m"\ndata = "d"\nout = "o"\nmicro_batch = 0\n')
    done = cli("train", str(bad))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {bad}: micro_batch: Input should be greater than or equal to 1"
    ]


@pytest.mark.slow  # ~30 s: two processes each load torch and the model
def test_two_processes_train_through_accelerate(world, tmp_path):
    # DDP on CPU (gloo) via torchrun: accelerate shards the batches; the model folder is written once.
    import os
    import subprocess
    import sys

    model, data = world
    cfg = _write(tmp_path / "ddp.toml", f'model = "{model}"\ndata = "{data}"\nout = "{tmp_path / "run"}"\n'
                 "steps = 2\nmicro_batch = 1\nmax_tokens = 1024\nlog_every = 1\n")  # fmt: skip
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "strokeagent.cli", "train", str(cfg)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    # torchrun's summary fills the tail of stderr: show the lines that say what went wrong in a rank.
    words = ("rror", "bort", "terminate", "what()")
    said = [line for line in done.stderr.splitlines() if any(w in line for w in words)]
    assert done.returncode == 0, "\n".join(said)[:4000] or done.stderr[-2000:]
    assert done.stdout.count("step 2: checkpoint") == 1  # only the main process reports
    assert done.stderr.count("step 2/2") == 1
    state = tmp_path / "run" / "checkpoint-000002" / "state"
    assert (state.parent / "model.safetensors").is_file() and any(state.iterdir())


@pytest.mark.slow  # ~11 s: two processes start torch and accelerate, then stop
def test_processes_that_accelerate_would_run_alone_are_refused(world, tmp_path):
    # torchrun without ACCELERATE_USE_CPU on a machine without GPUs: accelerate gives each process
    # DistributedType.NO, and both would train the whole data set into the same folder.
    if torch.cuda.device_count() >= 2:
        pytest.skip("GPUs here: accelerate runs the two processes together")
    import os
    import subprocess
    import sys

    model, data = world
    cfg = _write(tmp_path / "alone.toml", f'model = "{model}"\ndata = "{data}"\nout = "{tmp_path / "run"}"\n')
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    env |= {"OMP_NUM_THREADS": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "strokeagent.cli", "train", str(cfg)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    error = (
        "error: launched as 2 processes, but accelerate runs each alone (NO): they would all train and write "
        "the same checkpoints; without GPUs add --cpu (or ACCELERATE_USE_CPU=1), see docs/training.md"
    )
    assert done.stderr.count(error) == 2, done.stderr[-2000:]
    assert not (tmp_path / "run").exists()
