"""cozy_actors.conversation.history: what past a turn shows the model."""

from __future__ import annotations

from cozy_actors.conversation.history import recent_history, trim_past


def _m(role: str, text: str = "x") -> dict[str, str]:
    return {"role": role, "content": text}


def test_recent_history_keeps_the_last_n_and_never_starts_mid_exchange() -> None:
    past = [_m("user", "a"), _m("assistant", "b"), _m("tool", "c"), _m("user", "d"), _m("assistant", "e")]
    assert recent_history(past, 10) == past
    assert recent_history(past, 3) == [_m("user", "d"), _m("assistant", "e")]  # no leading tool result
    assert recent_history(past, 0) == []


def test_trim_past_keeps_the_turn_being_answered_whole() -> None:
    convo = [_m("user", "1"), _m("assistant", "2"), _m("user", "3"), _m("assistant", "4"), _m("user", "now")]
    assert trim_past(convo, 2) == [_m("user", "3"), _m("assistant", "4"), _m("user", "now")]
    assert trim_past(convo, 0) == [_m("user", "now")]
    assert trim_past([_m("assistant", "hi")], 5) == [_m("assistant", "hi")]  # no user message: nothing cut
