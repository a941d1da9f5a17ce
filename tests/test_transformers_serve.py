"""The OpenAI head against a second real server: `transformers serve` on SmolLM2, over loopback.

`transformers serve` ignores `response_format` (it logs a warning), so the head runs in prompt mode there (an example
object in the system prompt, the reply parsed and validated). SmolLM2-135M follows that for a one-field
answer; for the planner's three-field answer it often writes prose, which the head retries and then
reports: constrained decoding (vLLM, or the local transformers head) is what makes it reliable."""

import asyncio
import os
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from strokeagent.backends import bundled_backends_dir, forget_backends, load_backend
from strokeagent.backends.smollm2 import smollm2_folder
from strokeagent.backends.vllm_local import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def serve_url(tmp_path_factory):
    folder = smollm2_folder()
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [str(Path(sys.executable).parent / "transformers"), "serve", folder.name]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--dtype", "float32"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as out:
        # Run from the cache folder so the model's name is its folder's name, as in backends/SERVING.md.
        process = subprocess.Popen(command, cwd=folder.parent, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "transformers serve did not start in 180 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # uvicorn waits for a generation still running
            process.kill()
            process.wait()


@pytest.fixture
def head(serve_url, tmp_path):
    """backends/smollm2-serve.toml as shipped, pointed at this test's port."""
    table = tomllib.loads((bundled_backends_dir() / "smollm2-serve.toml").read_text())
    assert table["structured"] == "prompt" and table["vision"] is False
    lines = [
        f"{k} = {v!r}".replace("'", '"').replace("False", "false")
        for k, v in table.items()
        if k != "base_url"
    ]
    path = tmp_path / "serve.toml"
    path.write_text("\n".join([*lines, f'base_url = "{serve_url}"']))
    forget_backends()
    yield load_backend(path)
    forget_backends()


class Fruit(BaseModel):
    fruit: str = Field(max_length=40)


FRUIT = [
    {"role": "system", "content": "Name the fruit in the sentence."},
    {"role": "user", "content": "I ate an apple."},
]


def test_prompt_mode_gets_a_validated_answer_from_transformers_serve(head):
    answer = asyncio.run(head.chat(FRUIT, schema=Fruit))
    assert isinstance(answer, Fruit) and "apple" in answer.fruit.lower()
