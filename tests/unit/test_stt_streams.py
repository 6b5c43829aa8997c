"""STT stream sessions (cozy_actors/stt_streams.py): admission, maximum duration, revocation, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from cozy_actors.config.limits import SttStreamLimitsConfig
from cozy_actors.config.models import SessionConfig
from cozy_actors.runtime import LoopLagMonitor
from cozy_actors.stt_streams import EXPIRED, REVOKED, SHUTDOWN, StreamEnd, SttStreams
from cozy_core.errors import CozyError


class Lag(LoopLagMonitor):
    def __init__(self, ewma_s: float = 0.0) -> None:
        super().__init__()
        self.value = ewma_s

    @property
    def ewma_s(self) -> float:
        return self.value


def streams(backlog: int = 0, lag_s: float = 0.0, **limits: object) -> tuple[SttStreams, Lag, list[int]]:
    pending = [backlog]
    lag = Lag(lag_s)
    s = SttStreams(SttStreamLimitsConfig(**limits), SessionConfig(), lag, backlog=lambda: pending[0])
    return s, lag, pending


def refused(s: SttStreams) -> str:
    with pytest.raises(CozyError) as info:
        s.open(lambda why: None)
    assert info.value.status == 503 and info.value.code == "RESOURCE_EXHAUSTED"
    return info.value.message


async def test_admission_on_count_loop_lag_and_pool_backlog() -> None:
    s, lag, pending = streams(max_sessions=2)
    first, _second = s.open(lambda why: None), s.open(lambda why: None)
    assert "2 transcription streams open" in refused(s)
    first.release()
    s.open(lambda why: None)
    s, lag, pending = streams()
    lag.value = 0.6  # over app.sessions.max_loop_lag_ms (500)
    assert "event loop lag" in refused(s)
    lag.value, pending[0] = 0.0, 64  # app.sessions.max_pool_backlog
    assert "inference jobs queued" in refused(s)
    pending[0] = 0
    s.open(lambda why: None)


async def test_maximum_duration_ends_the_stream_once() -> None:
    s, _, _ = streams(max_duration_s=0.05)
    ends: list[StreamEnd] = []
    lease = s.open(ends.append)
    await asyncio.sleep(0.15)
    lease.end(REVOKED)  # already ended: told once
    assert ends == [EXPIRED] and len(s) == 0


async def test_revocation_by_user_or_key_and_shutdown() -> None:
    s, _, _ = streams()
    ends: dict[str, list[StreamEnd]] = {"a1": [], "a2": [], "b": []}
    s.open(ends["a1"].append, user_id="a", key_id="k1")
    s.open(ends["a2"].append, user_id="a", key_id="k2")
    s.open(ends["b"].append, user_id="b", key_id="k3")
    assert s.end_sessions(key_id="k1") == 1 and ends["a1"] == [REVOKED] and not ends["a2"]
    assert s.end_sessions(user_id="a") == 1 and ends["a2"] == [REVOKED]
    s.end_all()
    assert ends["b"] == [SHUTDOWN] and len(s) == 0
    assert "shutting down" in refused(s)
