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

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from langgraph.checkpoint.sqlite import SqliteSaver

from strokeagent.core.threads import run_on
from strokeagent.errors import RunError

T = TypeVar("T")


class ThreadSqliteSaver(SqliteSaver):
    """``SqliteSaver`` whose async methods run the sync ones on one writer thread (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, writer: ThreadPoolExecutor, *, new: bool = False) -> None:
        super().__init__(conn)
        self.writer = writer
        # A database made just now holds nothing until its first write, so a new run's first read (LangGraph
        # asks for the newest checkpoint before the first stage) is answered here instead of waiting on the
        # writer behind the tables' creation: 1-2 ms of every run's start on the 2-core machine.
        self._nothing_written = new

    async def _on_writer(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_on(self.writer, partial(call, *args, **kwargs))

    async def aget_tuple(self, config: Any) -> Any:
        if self._nothing_written:
            return None
        return await self._on_writer(self.get_tuple, config)

    async def alist(
        self, config: Any, *, filter: Any = None, before: Any = None, limit: Any = None
    ) -> AsyncIterator[Any]:
        if self._nothing_written:
            return
        listed = partial(self.list, config, filter=filter, before=before, limit=limit)
        for item in await self._on_writer(lambda: [*listed()]):
            yield item

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        self._nothing_written = False
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        self._nothing_written = False
        super().put_writes(config, writes, task_id, task_path)

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        self._nothing_written = False  # now, not when the writer gets to it: a read after this must see it
        return await self._on_writer(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self._nothing_written = False
        await self._on_writer(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._on_writer(self.delete_thread, thread_id)

    async def aget_delta_channel_history(self, *, config: Any, channels: Sequence[str]) -> Mapping[str, Any]:
        return await self._on_writer(self.get_delta_channel_history, config=config, channels=channels)


def damaged(path: Path, e: BaseException) -> RunError:
    """The one line for a checkpoint database that cannot be read: what broke, and how to go on."""
    why = " ".join(str(e).split()) or "unreadable"
    return RunError(
        f"the checkpoint database {path} is damaged ({type(e).__name__}: {why}); move it aside to start the run "
        f"over from run.json (same seeds, same images), then `strokeagent resume {path.parent}`"
    )


@contextmanager
def open_checkpointer(path: str | Path) -> Iterator[ThreadSqliteSaver]:
    """The checkpointer of one run folder's ``checkpoints.sqlite``; every write done and the file closed on exit.

    The tables are made on the writer thread right away, while the caller compiles its graph.
    """
    conn = None
    try:
        new = not Path(path).exists()
        conn = sqlite3.connect(str(path), check_same_thread=False)
        # synchronous=OFF: SQLite hands each write to the OS and does not wait for the disk, so the database
        # survives a killed process (what resume is for) but not a power cut, like every other file of the
        # run (atomic renames, no fsync). The syncs it skips -- switching to WAL, checkpointing the WAL on
        # close -- cost more than all the rest of starting and finishing a run.
        conn.execute("PRAGMA synchronous=OFF")
    except (sqlite3.Error, OSError) as e:  # a folder in its place, a file that is not a database, no access
        if conn is not None:
            conn.close()
        raise damaged(Path(path), e) from None
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoints")
    saver = ThreadSqliteSaver(conn, writer, new=new)
    writer.submit(saver.setup)
    try:
        yield saver
    finally:
        writer.shutdown(wait=True)
        conn.close()
