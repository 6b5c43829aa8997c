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


def test_a_history_between_half_and_all_of_the_window_is_kept_whole() -> None:
    """26 messages under a window of 50: all 26 (a negative slice start once kept only the last 24,
    so a conversation's prompt shrank from its 13th turn on until it reached the window)."""
    past = [_m("user" if i % 2 == 0 else "assistant", str(i)) for i in range(26)]
    assert recent_history(past, 50) == past
    assert recent_history(past, 26) == past
    assert recent_history(past, 25) == past[2:]  # never starts with an assistant reply
