"""LangGraph's own checkpoint conformance suite on the run folder's checkpointer."""

from __future__ import annotations

import asyncio

from langgraph.checkpoint.conformance import checkpointer_test, validate

from strokeagent.runs.checkpoints import open_checkpointer


def test_the_run_checkpointer_passes_langgraphs_conformance_suite(tmp_path):
    made = iter(range(10_000))

    @checkpointer_test(name="ThreadSqliteSaver")
    async def saver():
        with open_checkpointer(tmp_path / f"c{next(made)}.sqlite") as s:
            yield s

    report = asyncio.run(validate(saver))
    report.print_report()
    assert report.passed_all_base()


def test_a_new_runs_first_stage_does_not_wait_for_the_tables(tmp_path, monkeypatch):
    # A database made just now holds no checkpoint: LangGraph's first read is answered without waiting on the
    # writer thread, where the tables are still being made (slowed down here); the writes queue after them.
    import time

    from langgraph.checkpoint.sqlite import SqliteSaver

    from strokeagent.runs.api import astream, resume
    from strokeagent.testing import test_policy

    async def first_event_after(out) -> float:  # noqa: ANN001
        start = time.perf_counter()
        events = astream("p", test_policy(steps=1), seed=2, out=out)
        await anext(events)
        seconds = time.perf_counter() - start
        await events.aclose()  # the run pauses here; its checkpoints are written after the tables
        return seconds

    # A process's first run imports what runs need (0.4-0.8 s on the 2-core machine): not what is measured here.
    asyncio.run(first_event_after(tmp_path / "warm-up"))
    setup = SqliteSaver.setup
    monkeypatch.setattr(SqliteSaver, "setup", lambda self: (time.sleep(0.5), setup(self))[1])
    assert asyncio.run(first_event_after(tmp_path / "r")) < 0.4
    monkeypatch.setattr(SqliteSaver, "setup", setup)
    resumed = resume(tmp_path / "r")  # from the checkpoint written behind the slow tables
    assert resumed.final_image is not None and [t.stage for t in resumed.timings][0] == "plan"
