"""Reaching an OpenAI-compatible server: what the text head (``openai``) and the image backend
(``openai-images``) share — the URL check, the API key from the environment, and one SDK client per
event loop.

    >>> check_base_url("openai head", "http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1")
    'http://127.0.0.1:8000/v1'
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from strokeagent.errors import PolicyError


def check_base_url(what: str, base_url: str, example: str) -> str:
    """``base_url`` without its trailing slash; a ``PolicyError`` naming ``what`` if it is not http(s)."""
    url = urlparse(base_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise PolicyError(f"{what}: base_url {base_url!r} is not an http(s) URL like {example}")
    return base_url.rstrip("/")


def api_key_from(what: str, api_key_env: str | None) -> str:
    """The key in the environment variable ``api_key_env`` (refused when unset), else ``"EMPTY"``: what a local
    server without ``--api-key`` accepts."""
    if api_key_env is None:
        return "EMPTY"
    key = os.environ.get(api_key_env)
    if not key:
        raise PolicyError(f"{what}: the environment variable {api_key_env} (api_key_env) is not set")
    return key


class ClientPerLoop:
    """One ``openai.AsyncOpenAI`` per event loop, dropped with its loop.

    An AsyncOpenAI is bound to the event loop it first ran in, and a backend outlives loops (``load_backend``
    caches it; every sync call has its own loop). The client is made from its ``backend``'s ``base_url``,
    ``api_key``, ``timeout``, ``max_retries`` and ``http_client`` (an ``httpx.AsyncClient``, e.g. with a
    ``MockTransport``, else the SDK's own) as they are when first used; ``on_request`` is called for every
    HTTP request sent, the SDK's retries included.
    """

    def __init__(self, backend: Any, on_request: Callable[[Any], Awaitable[None]] | None = None) -> None:
        self.backend, self.on_request = backend, on_request
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def __len__(self) -> int:
        return len(self._by_loop)

    def get(self) -> Any:
        """The client of the running event loop, made on first use."""
        import httpx
        import openai

        loop = asyncio.get_running_loop()
        client = self._by_loop.get(loop)
        if client is None:
            b = self.backend
            http = b.http_client or httpx.AsyncClient(timeout=b.timeout)
            if self.on_request is not None:
                http.event_hooks.setdefault("request", []).append(self.on_request)
            client = openai.AsyncOpenAI(base_url=b.base_url, api_key=b.api_key, timeout=b.timeout,
                                        max_retries=b.max_retries, http_client=http)  # fmt: skip
            self._by_loop[loop] = client
        return client
