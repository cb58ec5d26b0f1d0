"""An OpenAI-compatible chat-completions server, emulated, for the ``openai`` engine's tests.

No real language model can run in the test environment, so this ASGI app
stands in for vLLM, llama.cpp's server or Ollama on loopback: it speaks the
same ``POST /v1/chat/completions`` and ``GET /v1/models`` JSON, records every
request it receives (so tests can read the prompts the backend sent), and
answers from a script that tests control — canned text, HTTP errors with an
optional ``Retry-After``, slow answers, broken JSON. Its "summaries" are
mechanical (which speaker labels it saw, how many lines), not language.

    fake = FakeOpenAI()
    fake.fail(500, times=2)          # the next two calls fail, then answers resume
    with serve(fake.app) as url:     # tests.servers
        engine = OpenAIEngine(base_url=url + "/v1", model=fake.model)
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

_LABEL = re.compile(r"^#\d+ (P\d+)", re.MULTILINE)


@dataclass
class Step:
    """One scripted answer: an HTTP status (200 = a completion), a delay, extra headers."""

    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    content: str | None = None
    """The completion's text for a 200; None: the default reply."""
    raw: bytes | None = None
    """A body sent as is (for broken answers)."""


def default_reply(payload: dict[str, Any]) -> str:
    """A mechanical "summary": the speaker labels and line count of the user message."""
    system = payload["messages"][0]["content"]
    user = payload["messages"][-1]["content"]
    if "merge partial summaries" in system:
        parts = len(re.findall(r"^Part \d+:", user, re.MULTILINE))
        return f"- Merged {parts} parts: P1 decided the plan."
    labels = sorted(set(_LABEL.findall(user)), key=lambda s: int(s[1:]))
    lines = len(_LABEL.findall(user))
    return f"- {', '.join(labels) or 'Nobody'} wrote {lines} messages."


class FakeOpenAI:
    """The emulated server; ``app`` is the ASGI app, ``calls`` what it received."""

    def __init__(self, *, model: str = "fake-model",
                 reply: Callable[[dict[str, Any]], str] = default_reply) -> None:
        self.model = model
        self.reply = reply
        self.calls: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._script: deque[Step] = deque()
        self._lock = threading.Lock()
        self.default = Step()
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._completions, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])

    # -- scripting --

    def then(self, step: Step, times: int = 1) -> FakeOpenAI:
        with self._lock:
            self._script.extend(replace(step) for _ in range(times))
        return self

    def fail(self, status: int, *, times: int = 1, retry_after: str | None = None) -> FakeOpenAI:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return self.then(Step(status=status, headers=headers), times)

    def always(self, step: Step) -> FakeOpenAI:
        self.default = step
        return self

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.headers.clear()

    # -- views for assertions --

    def systems(self) -> list[str]:
        return [c["messages"][0]["content"] for c in self.calls]

    def users(self) -> list[str]:
        return [c["messages"][-1]["content"] for c in self.calls]

    # -- endpoints --

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _completions(self, request: Request) -> Response:
        payload = json.loads(await request.body())
        with self._lock:
            self.calls.append(payload)
            self.headers.append(dict(request.headers))
            n = len(self.calls)
            step = self._script.popleft() if self._script else self.default
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.raw is not None:
            return Response(step.raw, status_code=step.status, media_type="application/json",
                            headers=step.headers)
        if step.status != 200:
            return PlainTextResponse("upstream error", status_code=step.status,
                                     headers=step.headers)
        content = step.content if step.content is not None else self.reply(payload)
        return JSONResponse({
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": payload.get("model", self.model),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }, headers=step.headers)
