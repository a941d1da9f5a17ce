"""How long `strokeagent run` takes on the default policy, from the shell, and what the imports cost.

    $ python benchmarks/startup.py          # ~20 s

Runs the CLI on the example prompt five times in fresh processes (best and median
wall time, shell to finished run), then times each heavy import alone in a fresh
interpreter (best of three), so the share of each dependency can be read off.

Measured on the project's 2-core machine (2026-11-26, light `make run` environment,
other work running, this script at high priority): see the README's "Framework
overhead" section for the figures.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a red apple left of a blue cup"
IMPORTS = {
    "python itself": "pass",
    "strokeagent CLI (typer, rich)": "import strokeagent.cli",
    "numpy": "import numpy",
    "LangGraph + its SQLite checkpointer": "import langgraph.graph, langgraph.checkpoint.sqlite",
    "everything a default run imports": "import strokeagent.cli, strokeagent.runs.api, strokeagent.sketch.drafter, "
    "strokeagent.runs.checkpoints, langgraph.graph",
}


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    cli = str(Path(sys.executable).with_name("strokeagent"))
    with tempfile.TemporaryDirectory() as tmp:
        runs = [wall([cli, "run", PROMPT, "--out", f"{tmp}/r{i}", "--quiet"]) for i in range(5)]
    print(
        f"strokeagent run (default policy), shell to finished: best {min(runs):.2f} s, median {statistics.median(runs):.2f} s"
    )
    for label, code in IMPORTS.items():
        best = min(wall([sys.executable, "-c", code]) for _ in range(3))
        print(f"  {label:<36} {best:.2f} s")


if __name__ == "__main__":
    main()
