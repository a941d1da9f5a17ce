"""A text head at any OpenAI-compatible server (vLLM, ``transformers serve``, a hosted API).

    >>> head = OpenAIHead(base_url="http://127.0.0.1:8000/v1", model="smollm2", vision=False)
    >>> # plan = await head.chat([{"role": "user", "content": "plan"}], schema=PlanAnswer)
    >>> # plan = head.chat_sync([{"role": "user", "content": "plan"}], schema=PlanAnswer)

Images go to the last user turn as base64 PNG data URLs. The answer is held to the
schema in one of two ways (``structured``):

- ``"json_schema"``: ``response_format={"type": "json_schema", ...}``; the server
  constrains decoding (vLLM does; so do the OpenAI API and most others);
- ``"prompt"``: the schema is written into the system prompt and the reply is
  parsed, for servers that refuse ``response_format`` (``transformers serve``).

Either way the reply is validated with pydantic. Transport is the SDK's own: one
``AsyncOpenAI`` client per head (per event loop), its retries with backoff for a
server that is down, slow, or answers 408/409/429/5xx (honouring ``Retry-After``).
Only what the SDK cannot know is ours: a reply that is not a chat completion (a
body of ``[]``, ``null`` or HTML) or whose JSON does not match the schema is asked
again at ``retry_temperature`` with another seed (at temperature 0 the server would
repeat the same mistake). After ``max_retries`` retries either way, a ``RunError``
names the model and the URL. A 4xx other than 408/409/429 is not retried.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from strokeagent.backends.image import encode_png
from strokeagent.backends.openai_client import ClientPerLoop, api_key_from, check_base_url
from strokeagent.errors import PolicyError, RunError

if TYPE_CHECKING:
    from PIL import Image

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


class OpenAIHead:
    """``chat(messages, images, schema=...)`` through ``/v1/chat/completions``.

    ``api_key_env`` names the environment variable holding the key; it is read when
    the head is built, and a name that is not set is refused then. Without it the
    head sends ``"EMPTY"`` (what a local vLLM without ``--api-key`` accepts).
    ``vision = false`` says the model reads no images (a text-only model): stages
    then leave images out instead of getting a 400 from the server.
    """

    kind = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        structured: Literal["json_schema", "prompt"] = "json_schema",
        vision: bool = True,
        timeout: float = 60.0,
        max_retries: int = 3,
        temperature: float = 0.0,
        retry_temperature: float = 0.7,
        max_tokens: int = 512,
        seed: int | None = 0,
        extra_body: dict[str, Any] | None = None,
        http_client: Any = None,
    ) -> None:
        base_url = check_base_url("openai head", base_url, "http://127.0.0.1:8000/v1")
        if not model:
            raise PolicyError("openai head: 'model' is empty; give the name the server serves")
        if structured not in ("json_schema", "prompt"):
            raise PolicyError(f"openai head: structured = {structured!r}; use 'json_schema' or 'prompt'")
        if timeout <= 0 or max_retries < 0 or max_tokens < 1:
            raise PolicyError("openai head: timeout and max_tokens must be > 0, max_retries >= 0")
        self.api_key = api_key_from("openai head", api_key_env)
        self.base_url = base_url
        self.model = model
        self.structured = structured
        self.vision = vision
        self.timeout = timeout
        self.max_retries = max_retries
        self.temperature = temperature
        self.retry_temperature = retry_temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.extra_body = dict(extra_body or {})
        #: An ``httpx.AsyncClient`` to send through (tests give one with a ``MockTransport``); else the SDK's own.
        self.http_client = http_client
        self._clients = ClientPerLoop(self, on_request=self._count)
        self.calls = 0  # requests sent, the SDK's retries included (the benchmark reads it)

    def __str__(self) -> str:
        return f"text head openai {self.model!r} at {self.base_url}"

    async def chat(
        self, messages: list[dict[str, Any]], images: Sequence[Image.Image] = (), *, schema: type[T]
    ) -> T:
        """One validated answer; retries transient failures, then raises ``RunError``."""
        import openai  # lazy: the sketch policy and the CLI never import it

        request = self._request(messages, images, schema)
        client = self._clients.get()
        last = "no attempt made"
        for invalid in range(self.max_retries + 1):  # the SDK retries transport faults inside each call
            try:
                response = await client.chat.completions.create(**self._vary(request, invalid))
                return self._parse(response, schema)
            except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError) as e:
                # The SDK has retried these max_retries times already (APITimeoutError is an APIConnectionError).
                raise RunError(
                    f"{self}: no valid answer after {self.max_retries + 1} attempts; last: {_describe(e)}"
                ) from None
            except openai.APIStatusError as e:
                raise RunError(f"{self}: the server refused the request: {_describe(e)}") from None
            except (ValidationError, ValueError) as e:
                last = f"the reply does not match {schema.__name__}: {_first_line(e)}"
        raise RunError(f"{self}: no valid answer after {self.max_retries + 1} attempts; last: {last}")

    async def _count(self, request: Any) -> None:
        self.calls += 1

    def chat_sync(
        self, messages: list[dict[str, Any]], images: Sequence[Image.Image] = (), *, schema: type[T]
    ) -> T:
        """``chat`` for scripts and notebooks (not inside a running event loop)."""
        return asyncio.run(self.chat(messages, images, schema=schema))

    # -- the request and the reply ------------------------------------------------

    def _request(
        self, messages: list[dict[str, Any]], images: Sequence[Image.Image], schema: type[BaseModel]
    ) -> dict:
        messages = [dict(m) for m in messages]
        if images:
            if not self.vision:
                raise RunError(
                    f"{self}: this model reads no images (vision = false), yet {len(images)} were sent"
                )
            _attach_images(messages, images)
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            request["seed"] = self.seed
        if self.extra_body:
            request["extra_body"] = self.extra_body
        json_schema = schema.model_json_schema()
        if self.structured == "json_schema":
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": json_schema, "strict": True},
            }
        else:
            # An example object, not the JSON Schema: small models copy a schema back instead of filling it.
            hint = f"Answer with one JSON object only, like {json.dumps(skeleton(json_schema))}"
            if (
                messages
                and messages[0].get("role") == "system"
                and isinstance(messages[0].get("content"), str)
            ):
                messages[0]["content"] = f"{messages[0]['content']}\n\n{hint}"
            else:
                messages.insert(0, {"role": "system", "content": hint})
        return request

    def _vary(self, request: dict[str, Any], invalid: int) -> dict[str, Any]:
        if not invalid:
            return request
        seed = request.get("seed")
        return {
            **request,
            "temperature": self.retry_temperature,
            "seed": None if seed is None else seed + invalid,
        }

    def _parse(self, response: Any, schema: type[T]) -> T:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list):  # a 200 whose body is [], null or an HTML page
            raise ValueError(f"the server's reply is not a chat completion: {str(response)[:80]!r}")
        choice = choices[0] if choices else None
        text = (choice.message.content or "") if choice else ""
        if not text.strip():
            raise ValueError("empty reply")
        # strict=False: grammar engines let raw control characters into strings, which JSON forbids.
        return schema.model_validate(json.loads(_json_part(text), strict=False))


def skeleton(json_schema: dict[str, Any]) -> dict[str, Any]:
    """An example object for a pydantic JSON schema: ``{"instruction": "...", "done": false}``."""
    examples = {"string": "...", "boolean": False, "integer": 0, "number": 0.0, "array": [], "object": {}}
    out = {}
    for name, prop in json_schema.get("properties", {}).items():
        kind = prop.get("type") or next(
            (p.get("type") for p in prop.get("anyOf", []) if p.get("type") != "null"), None
        )
        out[name] = prop["enum"][0] if "enum" in prop else examples.get(kind, "...")
    return out


def _json_part(text: str) -> str:
    """The JSON object in a reply: fences and chatter around it removed."""
    text = _FENCE.sub("", text.strip())
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def _attach_images(messages: list[dict[str, Any]], images: Sequence[Image.Image]) -> None:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content", "")
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
            message["content"] = [
                *({"type": "image_url", "image_url": {"url": data_url(i)}} for i in images),
                *parts,
            ]
            return
    messages.append(
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": data_url(i)}} for i in images],
        }
    )


def data_url(image: Image.Image) -> str:
    """``data:image/png;base64,...`` of an image."""
    return "data:image/png;base64," + encode_png(image.convert("RGB"))


def _describe(e: Exception) -> str:
    status = getattr(e, "status_code", None)
    return f"{type(e).__name__}{f' {status}' if status else ''}: {_first_line(e)}"


def _first_line(e: Exception) -> str:
    if isinstance(e, ValidationError):
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the reply"
        return f"{where}: {first['msg']}"[:300]
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
