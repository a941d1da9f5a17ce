"""One long-lived thread for an object's GPU work: ``OwnThread``.

    >>> class Painter(OwnThread):
    ...     thread_name = "painter"
    >>> Painter().executor.submit(lambda: 6 * 7).result()
    42

Much of what a GPU warms up belongs to the thread that made it: torch.compile's
CUDA graphs, PyTorch's cuDNN execution plans (a thread-local cache: a VQ
decoder's, VAE's, UNet's or vision encoder's convolutions plan again on a new
thread), cuBLAS handles and workspaces. Work sent to an event loop's default
executor starts cold in each run (``asyncio.run`` makes a new executor each
time) and, within one, on whichever worker is free. An object with a thread of
its own keeps that state for its lifetime, whichever run calls it; on one GPU
the calls run one after another anyway.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import cached_property, partial
from typing import Any, TypeVar

T = TypeVar("T")


async def run_on(executor: Executor | None, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on ``executor`` (``None``: the event loop's default), awaited; context variables go along,
    as with ``asyncio.to_thread``."""
    call = partial(contextvars.copy_context().run, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(executor, call)


class OwnThread:
    """``executor``: one thread, made on first use, named ``strokeagent-<thread_name>``."""

    #: The thread's name; by default the model's ``family``, else the class name without "Model".
    thread_name: str | None = None

    @cached_property
    def executor(self) -> ThreadPoolExecutor:
        name = self.thread_name or getattr(self, "family", type(self).__name__.removesuffix("Model"))
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"strokeagent-{name.lower()}")

    async def on_own_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on ``executor``, awaited."""
        return await run_on(self.executor, fn, *args)
