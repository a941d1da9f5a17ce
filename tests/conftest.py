import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
TEST_POLICIES = HERE / "policies"


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real `strokeagent` command in a subprocess, as a user runs it."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "strokeagent.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


def record_threads(monkeypatch, calls: list[tuple[object, str]]) -> list[str]:
    """Wrap each ``(obj, method name)`` so that every call appends its thread's name to the list returned."""
    import threading

    names: list[str] = []
    for obj, name in calls:
        method = getattr(obj, name)

        def recording(*args, _method=method, **kwargs):
            names.append(threading.current_thread().name)
            return _method(*args, **kwargs)

        monkeypatch.setattr(obj, name, recording)
    return names


def pixels_both_ways(backend, monkeypatch, requests):
    """Each request's bytes with the pictures converted on the device, then by diffusers' own PIL path, and
    the output types the pipelines were asked for."""
    import strokeagent.backends.diffusers as module

    asked = []
    for pipe in backend._pipes.values():
        call = type(pipe).__call__
        monkeypatch.setattr(type(pipe), "__call__", lambda self, *a, _call=call, **kw: (
            asked.append(kw["output_type"]), _call(self, *a, **kw))[1])  # fmt: skip
    on_device = [im.tobytes() for r in requests for im in backend.run([r])]
    monkeypatch.setattr(module, "PIXELS_ON_DEVICE_PIPELINES", frozenset())
    by_pil = [im.tobytes() for r in requests for im in backend.run([r])]
    return on_device, by_pil, asked


def picture(seed, size=64):
    """A seeded noise RGB picture: an init image for image-to-image."""
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))
