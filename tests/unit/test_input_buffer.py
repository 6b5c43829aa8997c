"""The Realtime input buffer stays bounded by dropping whole old frames, and cuts to an utterance."""

from __future__ import annotations

from cozy_actors.realtime.input_buffer import InputBuffer


def test_cap_drops_oldest_frames_and_take_empties() -> None:
    buf = InputBuffer(max_bytes=10)
    for i in range(6):
        buf.append(bytes([i]) * 4)
    assert len(buf) == 8  # two frames of 4: a third would pass the cap
    assert buf.take() == b"\x04" * 4 + b"\x05" * 4
    assert len(buf) == 0 and buf.take() == b""


def test_keep_last_rounds_to_whole_frames_never_below() -> None:
    buf = InputBuffer(max_bytes=1000)
    for i in range(5):
        buf.append(bytes([i]) * 10)
    buf.keep_last(15)  # 15 bytes fall in the last two frames: both stay
    assert buf.take() == b"\x03" * 10 + b"\x04" * 10
    buf.append(b"x" * 10)
    buf.keep_last(100)  # more than is there: nothing dropped
    assert len(buf) == 10
    buf.keep_last(0)
    assert len(buf) == 0
