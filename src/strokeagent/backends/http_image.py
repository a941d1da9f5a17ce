"""``kind = "http-image"``: the client of ``strokeagent serve image``, with the service's defaults.

    >>> backend = HttpImageBackend(url="http://127.0.0.1:8100", tasks=["text-to-image", "image-to-image"])
    >>> backend.base_url
    'http://127.0.0.1:8100/v1'

It is ``kind = "openai-images"`` (``backends/openai_images.py``: the same client, the
official ``openai`` SDK over the OpenAI Images API) under the options this kind always had.
A description file::

    kind = "http-image"
    url = "http://127.0.0.1:8100"
    tasks = ["text-to-image", "image-to-image", "inpaint"]   # what the served model can do
    token_env = "STROKEAGENT_IMAGE_TOKEN"                     # the token is read from here, never written down

``url`` is the service's root (``/v1`` is added); the token comes from ``token`` or
``token_env`` and may be absent (a service on loopback needs none); ``retries`` are the
SDK's retries (of a server that is down, too slow, or answers 5xx); ``backoff`` is kept
for old descriptions and ignored (the SDK waits 0.5 s, doubling, up to 8 s, and honours
``Retry-After``). A 4xx answer is the request's fault and is not retried.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from strokeagent.backends.image import TASKS
from strokeagent.backends.openai_images import OpenAIImagesBackend
from strokeagent.backends.service import TOKEN_ENV


class HttpImageBackend(OpenAIImagesBackend):
    """``openai-images`` at ``url + "/v1"``. Options: ``url``, ``tasks``, ``token`` or ``token_env``,
    ``timeout`` (seconds per attempt), ``retries``, ``backoff`` (ignored), ``name``."""

    kind = "http-image"

    def __init__(
        self,
        url: str,
        tasks: Sequence[str] = ("text-to-image", "image-to-image"),
        token: str | None = None,
        token_env: str = TOKEN_ENV,
        timeout: float = 300.0,
        retries: int = 3,
        backoff: float = 0.5,
        name: str | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task {unknown[0]!r}; tasks are {', '.join(TASKS)}")
        if retries < 0 or timeout <= 0 or backoff < 0:
            raise ValueError("retries must be >= 0, timeout > 0 and backoff >= 0")
        root = url.rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        super().__init__(
            f"{root}/v1", tasks=tasks, timeout=timeout, max_retries=retries, name=name or "http-image"
        )
        self.url = url
        self.token = token or os.environ.get(token_env) or None
        self.token_env = token_env
        self.retries = retries
        self.backoff = backoff
        if self.token:
            self.api_key = self.token
