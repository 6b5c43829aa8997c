"""Preemptive generation (cozy_actors/conversation/primed.py): a model call started at the speaker's
pause is adopted by the turn only if the turn makes exactly that request; otherwise it is cancelled
and the turn makes its own call. The scripted engine stands in for the external model service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from cozy_actors.conversation.events import TextDelta, TurnDone
from cozy_actors.conversation.primed import PrimedCall
from cozy_actors.conversation.turn import Turn
from cozy_actors.engines.llm.base import LLMEngine, LLMEvent, LLMFinish, LLMRequest, LLMTextDelta
from cozy_actors.observability.metrics import PREEMPTIVE
from tests.unit.test_turn import catalog, spec


class SlowEcho(LLMEngine):
    """Answers 'You said: <last user text>' a token at a time; records each call and its end."""

    provider: ClassVar[str] = "slow-echo"

    def __init__(self) -> None:
        super().__init__("slow-echo", None)
        self.calls: list[str] = []
        self.finished: list[str] = []  # calls that ran to their end (not cancelled)

    async def stream_chat(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        said = request.messages[-1]["content"]
        self.calls.append(said)
        for word in ["You", " said:", f" {said}"]:
            await asyncio.sleep(0.01)
            yield LLMTextDelta(word)
        yield LLMFinish("stop")
        self.finished.append(said)


def outcome(name: str) -> float:
    return PREEMPTIVE.labels(outcome=name)._value.get()  # type: ignore[attr-defined]


async def reply(turn: Turn) -> tuple[str, Any]:
    events = [ev async for ev in turn.events()]
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def primed_for(llm: SlowEcho, text: str) -> PrimedCall:
    guess = spec(llm, messages=[{"role": "user", "content": text}], server_tools={})
    return PrimedCall(llm, Turn(guess, catalog()).first_request).start()


async def test_the_turn_adopts_the_call_primed_with_its_words() -> None:
    llm, used = SlowEcho(), outcome("used")
    primed = primed_for(llm, "what time is it")
    await asyncio.sleep(0.05)  # the silence window: the primed call has run to its end meanwhile
    real = spec(llm, messages=[{"role": "user", "content": "what time is it"}], server_tools={}, primed=primed)
    text, done = await reply(Turn(real, catalog()))
    assert text == "You said: what time is it" and isinstance(done, TurnDone)
    assert llm.calls == ["what time is it"]  # one model call for the turn, started at the pause
    assert outcome("used") == used + 1


async def test_adopted_while_still_streaming() -> None:
    llm = SlowEcho()
    primed = primed_for(llm, "hello")
    await asyncio.sleep(0.015)  # one token in
    real = spec(llm, messages=[{"role": "user", "content": "hello"}], server_tools={}, primed=primed)
    assert (await reply(Turn(real, catalog())))[0] == "You said: hello"
    assert llm.calls == ["hello"]


async def test_other_words_cancel_it_and_the_turn_calls_the_model_itself() -> None:
    llm, discarded = SlowEcho(), outcome("discarded")
    primed = primed_for(llm, "what time")  # the user paused, then went on
    await asyncio.sleep(0.005)
    real = spec(llm, messages=[{"role": "user", "content": "what time is it in Paris"}], server_tools={}, primed=primed)
    text, _ = await reply(Turn(real, catalog()))
    assert text == "You said: what time is it in Paris"  # nothing of the primed call shows
    assert llm.calls == ["what time", "what time is it in Paris"]
    assert outcome("discarded") == discarded + 1
    await asyncio.sleep(0.05)
    assert llm.finished == ["what time is it in Paris"]  # the primed call was stopped, not run out


async def test_other_settings_do_not_adopt_it() -> None:
    llm = SlowEcho()
    primed = primed_for(llm, "hi")
    await asyncio.sleep(0.005)
    real = spec(llm, messages=[{"role": "user", "content": "hi"}], server_tools={}, primed=primed, temperature=0.1)
    await reply(Turn(real, catalog()))
    assert llm.calls == ["hi", "hi"]  # a different request (temperature): its own call


async def test_a_dropped_primed_call_stops() -> None:
    llm, discarded = SlowEcho(), outcome("discarded")
    primed = primed_for(llm, "so")
    await asyncio.sleep(0.015)
    primed.cancel()
    primed.cancel()  # counted once
    await asyncio.sleep(0.05)
    assert llm.finished == [] and outcome("discarded") == discarded + 1


async def test_not_yet_sent_is_not_adopted() -> None:
    """The turn came before the primed call had its request (context still loading): its own call."""
    llm = SlowEcho()
    primed = primed_for(llm, "hi")
    real = spec(llm, messages=[{"role": "user", "content": "hi"}], server_tools={}, primed=primed)
    assert (await reply(Turn(real, catalog())))[0] == "You said: hi"
    await asyncio.sleep(0.05)
    assert llm.calls == ["hi"]  # the primed one never reached the model
