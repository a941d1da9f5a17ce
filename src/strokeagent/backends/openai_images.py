"""``kind = "openai-images"``: an image backend at any OpenAI Images API server.

    >>> backend = OpenAIImagesBackend(base_url="http://127.0.0.1:8100/v1", tasks=["text-to-image", "edit"])
    >>> sorted(backend.tasks)
    ['edit', 'text-to-image']

That is ``strokeagent serve image`` itself, vLLM-Omni (``vllm serve ... --omni``), SGLang Diffusion,
or a hosted API. A description file::

    kind = "openai-images"
    base_url = "http://127.0.0.1:8091/v1"
    model = "Qwen/Qwen-Image"                      # sent as `model` when given
    tasks = ["text-to-image", "edit"]              # what the served model can do
    api_key_env = "VLLM_API_KEY"                   # the key is read from here; unset is refused at load

Text-to-image is ``POST /v1/images/generations``; ``edit``, ``image-to-image`` and ``inpaint``
are ``POST /v1/images/edits`` (multipart, the image as a PNG file; an inpainting mask goes as
OpenAI's: a PNG whose transparent pixels are repainted). Always ``n = 1``,
``response_format = "b64_json"``, ``size = "WxH"``. What OpenAI's API has no field for goes in
the body as the extra fields vLLM-Omni, SGLang Diffusion and ``serve image`` read
(``extra_fields`` picks which; a hosted API that refuses unknown fields takes ``[]``):

- ``seed`` (the request's seed: the same seed gives the same image where the server honours it),
- ``num_inference_steps``, ``guidance_scale`` (only when the request sets one),
  ``negative_prompt`` (only when set),
- ``strength`` for image-to-image (``serve image`` reads its presence as "image-to-image, not edit").

Transport is the SDK's: one ``AsyncOpenAI`` per backend per event loop, ``timeout`` per
attempt, ``max_retries`` retries with backoff for a server that is down, slow, or answers
408/409/429/5xx. Then the stage fails with one line naming the backend and the URL (the run
keeps what it made and can be resumed). Any other 4xx is the request's fault: not retried.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Sequence
from typing import Any

from PIL import Image

from strokeagent.backends.image import TASKS, ImageBackendError, ImageRequest, decode_png
from strokeagent.backends.openai_client import ClientPerLoop, api_key_from, check_base_url
from strokeagent.core.store import png_bytes
from strokeagent.errors import PolicyError

EXTRA_FIELDS = ("seed", "num_inference_steps", "guidance_scale", "negative_prompt", "strength")


class OpenAIImagesBackend:
    """``generate(requests)`` through ``/v1/images/generations`` and ``/v1/images/edits``.

    Options: ``base_url`` (ending in ``/v1``), ``model``, ``tasks``, ``api_key_env``, ``timeout``
    (seconds per attempt), ``max_retries``, ``extra_fields``, ``extra_body`` (sent with every
    request), ``name``; ``http_client`` (an ``httpx.AsyncClient``, for tests).
    """

    kind = "openai-images"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        tasks: Sequence[str] = ("text-to-image",),
        api_key_env: str | None = None,
        timeout: float = 300.0,
        max_retries: int = 3,
        extra_fields: Sequence[str] = EXTRA_FIELDS,
        extra_body: dict[str, Any] | None = None,
        name: str | None = None,
        http_client: Any = None,
    ) -> None:
        base_url = check_base_url("openai-images", base_url, "http://127.0.0.1:8100/v1")
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise PolicyError(
                f"openai-images: unknown task {unknown[0] if unknown else None!r}; tasks are {', '.join(TASKS)}"
            )
        bad = [f for f in extra_fields if f not in EXTRA_FIELDS]
        if bad:
            raise PolicyError(
                f"openai-images: unknown extra field {bad[0]!r}; they are {', '.join(EXTRA_FIELDS)}"
            )
        if timeout <= 0 or max_retries < 0:
            raise PolicyError("openai-images: timeout must be > 0 and max_retries >= 0")
        self.api_key = api_key_from("openai-images", api_key_env)
        self.base_url = base_url
        self.model = model
        self.tasks = frozenset(tasks)
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.extra_fields = tuple(extra_fields)
        self.extra_body = dict(extra_body or {})
        self.name = name or "openai-images"
        self.http_client = http_client
        self._clients = ClientPerLoop(self)
        self.last_batch_sizes: list[
            int
        ] = []  # what `serve image` reported (its extra `batch_size`), for tests

    def __str__(self) -> str:
        return f"image backend {self.name} at {self.base_url}"

    async def generate(self, requests: Sequence[ImageRequest]) -> list[Image.Image]:
        """One image per request, sent concurrently (a batching server batches them)."""
        for r in requests:
            if r.task not in self.tasks:
                raise ImageBackendError(
                    f"{self} cannot do {r.task}; its description lists {', '.join(sorted(self.tasks))}"
                )
        client = self._clients.get()
        return list(await asyncio.gather(*(self._one(client, r) for r in requests)))

    def body(self, request: ImageRequest) -> dict[str, Any]:
        """The extra fields sent for ``request`` (the SDK's ``extra_body``)."""
        values: dict[str, Any] = {
            "seed": request.seed,
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance,
            "negative_prompt": request.negative_prompt,
            "strength": request.strength if request.task == "image-to-image" else None,
        }
        extra = {k: v for k, v in values.items() if k in self.extra_fields and v is not None}
        return {**self.extra_body, **extra}

    async def _one(self, client: Any, request: ImageRequest) -> Image.Image:
        import openai

        common: dict[str, Any] = {
            "prompt": request.prompt,
            "n": 1,
            "size": f"{request.width}x{request.height}",
            "response_format": "b64_json",
            "extra_body": self.body(request),
        }
        if self.model:
            common["model"] = self.model
        try:
            if request.image is None:
                response = await client.images.generate(**common)
            else:
                files: dict[str, Any] = {
                    "image": ("image.png", png_bytes(request.image.convert("RGB")), "image/png")
                }
                if request.mask is not None:
                    # OpenAI's convention: transparent = repaint; ours: white = repaint.
                    alpha = request.mask.convert("L").point(lambda v: 255 - v)
                    rgba = request.image.convert("RGB").resize(alpha.size).convert("RGBA")
                    rgba.putalpha(alpha)
                    files["mask"] = ("mask.png", png_bytes(rgba), "image/png")
                response = await client.images.edit(**files, **common)
        except openai.APIConnectionError as e:  # APITimeoutError included; the SDK has retried it
            why = f"no answer within {self.timeout:g} s" if isinstance(e, openai.APITimeoutError) else (
                f"cannot connect ({_first_line(e.__cause__ or e)})")  # fmt: skip
            raise self._gave_up(why) from None
        except (openai.InternalServerError, openai.RateLimitError) as e:
            raise self._gave_up(f"HTTP {e.status_code}: {_detail(e)}") from None
        except openai.APIStatusError as e:
            if e.status_code in (408, 409):
                raise self._gave_up(f"HTTP {e.status_code}: {_detail(e)}") from None
            raise ImageBackendError(
                f"{self} refused the request: HTTP {e.status_code}: {_detail(e)}"
            ) from None
        return self._image(response)

    def _gave_up(self, why: str) -> ImageBackendError:
        return ImageBackendError(
            f"{self} failed after {self.max_retries + 1} attempts: {why}; start it (`strokeagent serve image "
            "--backend FILE`, or the server its description names) or fix the url, then resume the run"
        )

    def _image(self, response: Any) -> Image.Image:
        data = getattr(response, "data", None)
        b64 = getattr(data[0], "b64_json", None) if isinstance(data, list) and data else None
        if not b64:
            raise ImageBackendError(f"{self} answered without an image (no data[0].b64_json)")
        extra = getattr(response, "model_extra", None) or {}
        self.last_batch_sizes.append(int(extra.get("batch_size", 1)))
        try:
            return decode_png(b64)
        except ValueError:
            try:  # a server that answers JPEG or WebP
                image = Image.open(io.BytesIO(base64.b64decode(b64)))
                image.load()
                return image
            except Exception as e:
                raise ImageBackendError(f"{self} answered an image that cannot be read: {e}") from None


def _detail(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):  # the SDK keeps body["error"] when there is one
        error = body.get("error")
        detail = (
            body.get("detail")
            or body.get("message")
            or (error.get("message") if isinstance(error, dict) else None)
        )
        if detail:
            return str(detail)
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__
