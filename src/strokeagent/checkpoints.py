"""The run's checkpointer: LangGraph's own ``SqliteSaver``, driven from the async graph by one thread.

    >>> with open_checkpointer("runs/x/checkpoints.sqlite") as saver:      # doctest: +SKIP
    ...     graph = nodes.compile(checkpointer=saver)

Why not ``AsyncSqliteSaver``: it sends every SQL statement through aiosqlite's
worker thread, about fifteen round trips per stage (checkpoint, pending
writes, commits, cursors), and those hops were the larger part of the
framework's cost per stage transition. Here each saver call (a checkpoint, a
task's writes) is one hop to one writer thread, which keeps the file's I/O off
the event loop — it overlaps the next stage, as LangGraph's ``async``
durability intends — and keeps the writes in order. Storage, tables and
semantics are the ``SqliteSaver``'s own, so the file is what any LangGraph tool
expects.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from langgraph.checkpoint.sqlite import SqliteSaver

T = TypeVar("T")


class ThreadSqliteSaver(SqliteSaver):
    """``SqliteSaver`` whose async methods run the sync ones on one writer thread (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, writer: ThreadPoolExecutor) -> None:
        super().__init__(conn)
        self.writer = writer
        self.closing = False

    def close_soon(self) -> None:
        """Close the file on the writer thread, after the writes queued before; later calls do nothing."""
        if not self.closing:
            self.closing = True
            self.writer.submit(self.conn.close)

    def setup(self) -> None:
        if self.is_setup:
            return
        # The tables are made in a new, empty file: syncing that to disk guards nothing a run could lose,
        # and the syncs of the journal-mode switch cost more than all the rest of starting a run.
        self.conn.execute("PRAGMA synchronous=OFF")
        try:
            super().setup()
        finally:
            self.conn.execute("PRAGMA synchronous=NORMAL")

    async def _on_writer(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.writer, partial(call, *args, **kwargs))

    async def aget_tuple(self, config: Any) -> Any:
        return await self._on_writer(self.get_tuple, config)

    async def alist(
        self, config: Any, *, filter: Any = None, before: Any = None, limit: Any = None
    ) -> AsyncIterator[Any]:
        listed = partial(self.list, config, filter=filter, before=before, limit=limit)
        for item in await self._on_writer(lambda: [*listed()]):
            yield item

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return await self._on_writer(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await self._on_writer(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._on_writer(self.delete_thread, thread_id)

    async def aget_delta_channel_history(self, *, config: Any, channels: Sequence[str]) -> Mapping[str, Any]:
        return await self._on_writer(self.get_delta_channel_history, config=config, channels=channels)


@contextmanager
def open_checkpointer(path: str | Path) -> Iterator[ThreadSqliteSaver]:
    """The checkpointer of one run folder's ``checkpoints.sqlite``; every write done and the file closed on exit.

    The tables are made on the writer thread right away, while the caller compiles its graph; once the
    graph is done, ``saver.close_soon()`` lets the close (it checkpoints the WAL: an fsync) overlap the
    caller's own closing work. Exit waits for it: a folder copied right after holds the whole database.
    """
    conn = sqlite3.connect(str(path), check_same_thread=False)
    # WAL (set by the saver) with synchronous=NORMAL survives a killed process; it skips
    # the per-commit fsync that only a power cut needs, which would dominate a fast stage.
    conn.execute("PRAGMA synchronous=NORMAL")
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoints")
    saver = ThreadSqliteSaver(conn, writer)
    writer.submit(saver.setup)
    try:
        yield saver
    finally:
        saver.close_soon()
        writer.shutdown(wait=True)
