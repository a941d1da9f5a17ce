"""``kind = "http-image"``: the client of the diffusion service (``strokeagent serve image``).

    >>> backend = HttpImageBackend(url="http://127.0.0.1:8100", tasks=["text-to-image", "image-to-image"])
    >>> backend.endpoint
    'http://127.0.0.1:8100/v1/images'

A description file::

    kind = "http-image"
    url = "http://127.0.0.1:8100"
    tasks = ["text-to-image", "image-to-image", "inpaint"]   # what the served model can do
    token_env = "STROKEAGENT_IMAGE_TOKEN"                     # the token is read from here, never written down

Each request is one POST; concurrent ones are batched by the service.
A server that is down, too slow, or answers 5xx is retried ``retries`` times
with growing pauses; then the stage fails with one line naming the backend and
the URL (the run keeps what it made and can be resumed). A 4xx answer is the
request's fault and is not retried.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from PIL import Image

from strokeagent.backends.image import TASKS, ImageBackendError, ImageRequest, decode_png
from strokeagent.backends.service import API_PATH, TOKEN_ENV


class HttpImageBackend:
    """An image backend behind HTTP. Options: ``url``, ``tasks``, ``token`` or ``token_env``,
    ``timeout`` (seconds per attempt), ``retries``, ``backoff`` (seconds before the first retry,
    doubled each time), ``name``."""

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
        self.endpoint = url.rstrip("/") + (API_PATH if not url.rstrip("/").endswith(API_PATH) else "")
        self.tasks = frozenset(tasks)
        self.name = name or "http-image"
        self.token = token or os.environ.get(token_env) or None
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.last_batch_sizes: list[int] = []  # what the service reported, for tests

    async def generate(self, requests: Sequence[ImageRequest]) -> list[Image.Image]:
        import httpx

        for r in requests:
            if r.task not in self.tasks:
                raise ImageBackendError(
                    f"image backend {self.name} cannot do {r.task}; its description lists {', '.join(sorted(self.tasks))}"
                )
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as client:
            return list(await asyncio.gather(*(self._one(client, r) for r in requests)))

    async def _one(self, client, request: ImageRequest) -> Image.Image:  # noqa: ANN001 - an httpx.AsyncClient
        import httpx

        body = request.to_json()
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = await client.post(self.endpoint, json=body)
            except httpx.TimeoutException:
                problem = f"no answer within {self.timeout:g} s"
                continue
            except httpx.TransportError as e:
                problem = f"cannot connect ({type(e).__name__}: {e or 'connection failed'})"
                continue
            if response.status_code >= 500:
                problem = f"HTTP {response.status_code}: {_detail(response)}"
                continue
            if response.status_code >= 400:
                raise ImageBackendError(
                    f"image backend {self.name} at {self.endpoint} refused the request: HTTP "
                    f"{response.status_code}: {_detail(response)}"
                )
            data = response.json()
            self.last_batch_sizes.append(int(data.get("batch_size", 1)))
            return decode_png(data["image"])
        raise ImageBackendError(
            f"image backend {self.name} at {self.endpoint} failed after {self.retries + 1} attempts: {problem}; "
            "start it (`strokeagent serve image --backend FILE`) or fix the url, then resume the run"
        )


def _detail(response) -> str:  # noqa: ANN001 - an httpx.Response
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail or response.text[:200] or response.reason_phrase)
