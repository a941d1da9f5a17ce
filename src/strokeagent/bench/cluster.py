"""A bench on Ray: every (prompt, policy, seed) run on a Ray actor, the figures the same as a local bench.

    >>> run_bench(items, ["ablations/one_shot", "ablations/full"], "bench/demo", ray=True)   # doctest: +SKIP
    >>> run_bench(items, policies, "/shared/bench/demo", ray="ray://head:10001")           # doctest: +SKIP

``ray=True`` starts a local Ray instance or joins the one already running
(``RAY_ADDRESS``, or the newest one ``ray start`` left on this machine); a
string is a cluster address for ``ray.init``. A Ray instance the caller has
already started (``ray.init(...)`` before the bench) is used as it is.

The shape: one actor per policy per worker slot. Each actor builds its policy
once from the tables the bench records (``policy.record()`` →
``policy_from_tables``, never a pickled object) and the bench's critic, so a
model-backed policy loads its backends once per actor, not once per sample;
it runs up to ``concurrency`` samples at once on its own event loop, exactly as
the local runner does (the same ``samples.run_sample``). An actor asks for one GPU
where the cluster has GPUs, else one CPU; a policy gets
``max(1, slots // policies)`` actors, and a policy's actors are released as
soon as its samples are done, so a cluster with fewer slots than policies
works through them in turn.

Results come back two ways: each sample's record (the line of
``samples.jsonl``) returns to the driver, which appends it, rewrites the log
in suite order and writes the summary and reports, exactly as a local bench;
the run folder itself is written by the worker under ``OUT/runs/...``. So the
workers must see OUT at the same path as the driver: on one machine they do;
on a cluster, put ``--out`` on a shared filesystem (NFS, a mounted bucket).
An actor that cannot see ``OUT/bench.json`` refuses with one line saying so,
before it runs anything.

A killed bench continues as a local one does: the driver decides what is
done (``samples.jsonl`` and a finished ``run.json``), a run killed mid-way
resumes from its checkpoint. Stopping the driver kills its actors.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from strokeagent.errors import BenchError

#: The resources an actor asks for: one GPU where the cluster has any, else one CPU.
GPU = "GPU"


class _BenchActor:
    """Holds one policy (built from its tables) and the critic; runs that policy's samples."""

    def __init__(self, tables: dict[str, Any], out: str, critic: Any) -> None:
        from strokeagent.bench.samples import Judge
        from strokeagent.core.policy import policy_from_tables

        self.out = Path(out)
        if not (self.out / "bench.json").is_file():
            import socket

            raise BenchError(
                f"the Ray worker on {socket.gethostname()} cannot see {self.out}/bench.json; "
                "a bench on a cluster needs --out on a filesystem every node shares, at the same path"
            )
        name = tables.get("name", "policy")
        self.policy = policy_from_tables(tables, where=f"policy {name!r}", default_name=name)
        self.judge = Judge(critic)

    async def run(self, index: int, seed: int, item_json: str) -> dict[str, Any]:
        from strokeagent.bench.samples import Sample, run_sample
        from strokeagent.scene.geneval import SuiteItem

        item = SuiteItem.model_validate_json(item_json)
        return await run_sample(Sample(index, self.policy, seed, item), self.out, self.judge)


@functools.cache
def _remote_actor() -> Any:
    import ray

    return ray.remote(_BenchActor)


def connect(address: bool | str | None) -> bool:
    """Start or join Ray (``True``) or join ``address``; ``True`` when this call started it (stop it after)."""
    import ray

    if ray.is_initialized():
        return False
    import logging

    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if isinstance(address, str):
            ray.init(address=address, **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if isinstance(address, str) else "a local Ray instance"
        raise BenchError(f"could not start or join {where}: {str(e).splitlines()[0]}") from None
    return True


def check_shippable(critic: Any, policies: list[dict[str, Any]]) -> None:
    """Refuse, before any work, what cannot be sent to workers as tables: a critic object, a stage made in Python."""
    if not isinstance(critic, str | dict):
        raise BenchError(
            "a bench on Ray builds its critic on each worker: give it as a kind or a table "
            f"(e.g. 'sketch' or {{'kind': 'geneval', 'detector': ...}}), not a {type(critic).__name__} object"
        )
    for policy in policies:
        for stage, table in policy["tables"]["stages"].items():
            if "unrecorded" in table:
                raise BenchError(
                    f"policy {policy['name']!r}: stage {stage} was made in Python and cannot be sent to Ray "
                    f"workers ({table['unrecorded']}); give the policy as a file, or bench it without --ray"
                )


def _last_line(traceback: str) -> str:
    """``strokeagent.errors.BenchError: the message`` at the end of a traceback → ``the message``."""
    import re

    lines = [line for line in traceback.strip().splitlines() if line.strip()]
    last = re.sub(r"\x1b\[[0-9;]*m", "", lines[-1] if lines else "a Ray actor could not start")
    return re.sub(r"^[\w.]+(Error|Exception|Missing): ", "", last)


class RayPool:
    """The actors of one bench: ``await pool.run(sample)`` → its record; ``close()`` releases them all."""

    def __init__(
        self,
        policies: list[Any],  # Policy objects
        tables: dict[str, dict[str, Any]],  # policy name → its recorded tables (bench.json's)
        out: Path,
        critic: Any,
        concurrency: int,
        todo: dict[str, int],  # policy name → samples left to run
        address: bool | str | None = True,
    ) -> None:
        self.started = connect(address)
        import ray

        resources = ray.cluster_resources()
        gpus = int(resources.get(GPU, 0))
        options: dict[str, Any] = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        slots = gpus or max(1, int(resources.get("CPU", 1)))
        per_policy = max(1, slots // max(1, len(policies)))
        actor = _remote_actor()
        self.actors: dict[str, list[Any]] = {}
        self.left = dict(todo)
        self.turn: dict[str, int] = {}
        for policy in policies:
            count = min(per_policy, self.left.get(policy.name, 0))
            self.actors[policy.name] = [
                actor.options(max_concurrency=concurrency, **options).remote(
                    tables[policy.name], str(out), critic
                )
                for _ in range(count)
            ]
            self.turn[policy.name] = 0

    async def run(self, sample: Any) -> dict[str, Any]:
        from ray.exceptions import RayActorError, RayTaskError

        name = sample.policy.name
        actors = self.actors[name]
        actor = actors[self.turn[name] % len(actors)]
        self.turn[name] += 1
        try:
            record = await actor.run.remote(sample.index, sample.seed, sample.item.to_json())
        except RayTaskError as e:
            # The worker's own error (a BenchError, a backend's), not Ray's wrapper with its remote traceback.
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except RayActorError as e:
            if getattr(e, "actor_init_failed", False):
                # Its constructor failed (OUT not shared, a policy that cannot be built there): Ray keeps only
                # the traceback's text; its last line is the error.
                raise BenchError(_last_line(getattr(e, "error_msg", "") or str(e))) from None
            raise
        self.left[name] -= 1
        if self.left[name] == 0:
            self._release(name)
        return record

    def _release(self, name: str) -> None:
        import ray

        for actor in self.actors.pop(name, []):
            ray.kill(actor)

    def close(self) -> None:
        """Kill every actor still held (a stopped bench stops its runs); stop Ray if this pool started it."""
        import ray

        for name in list(self.actors):
            self._release(name)
        if self.started:
            ray.shutdown()
