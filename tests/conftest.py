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
