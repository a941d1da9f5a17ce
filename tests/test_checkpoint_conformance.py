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
