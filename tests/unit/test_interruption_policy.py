"""The interruption judge (what counts as a real interruption) and the personality's
`interruption` settings as loaded from YAML (validated, all-or-nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cozy_actors.personalities import InterruptionPolicy, PersonalityError, load_personalities
from cozy_actors.realtime.audio_out import words_played
from cozy_actors.realtime.interruption import Judge, words_of

EN = Judge(InterruptionPolicy(), "en")


@pytest.mark.parametrize(
    ("text", "ms", "verdict"),
    [
        ("", 900, "no_words"),
        ("[coughing]", 900, "no_words"),
        ("(noise) ...", 900, "no_words"),
        ("Mm-hmm.", 700, "backchannel"),
        ("Mm hmm", 700, "backchannel"),
        ("Okay, sure.", 900, "backchannel"),
        ("Yeah, right, I see.", 1200, "backchannel"),
        ("Stop.", 500, "noise"),  # one word: fewer than min_words
        ("Thank you.", 150, "noise"),  # a 150 ms burst is never speech meant for the bot
        ("Stop, tell me something else.", 1800, "real"),
        ("Okay stop", 800, "real"),  # not all backchannels
        ("yeah but wait", 900, "real"),
    ],
)
def test_verdicts(text: str, ms: float, verdict: str) -> None:
    assert EN.verdict(text, ms) == verdict


REPLY = "Echo: Here is a fairly long answer about the weather, which stays sunny all day long."


@pytest.mark.parametrize(
    ("heard", "verdict"),
    [
        ("Echo.", "echo"),  # the reply's own word
        ("Go, here's a fairly long end.", "echo"),  # an echo as the STT hears it: 2 of 7 words not the reply's
        ("Go here", "echo"),  # one word not the reply's: fewer than a real turn needs
        ("What time is it in Paris?", "real"),  # the user's own words over the echo
        ("here is what time is it", "real"),  # the echo and the user mixed: half the words are theirs
        ("stop now", "real"),
        ("stop", "noise"),  # one word, none the reply's: too few, as without a reply
    ],
)
def test_echo_of_the_reply(heard: str, verdict: str) -> None:
    assert EN.verdict(heard, 900, reply=REPLY) == verdict


SPOKEN = [(0.0, 2000.0, "Echo: What time is it in Paris right now?"), (2000.0, 3000.0, "It is noon.")]


def test_the_echo_is_only_what_played_meanwhile() -> None:
    """A caller who repeats the reply's opening words a second later is no echo of what plays then."""
    assert words_played(SPOKEN, 0.0, 500.0) == "Echo: What time is"  # one word of slack each side
    assert words_played(SPOKEN, 1500.0, 2600.0) == "in Paris right now? It is noon."
    assert words_played(SPOKEN, 3500.0, 4000.0) == ""
    meanwhile = words_played(SPOKEN, 0.0, 600.0)
    assert EN.verdict("What time is it in Paris right now?", 1800, reply=meanwhile) == "real"
    assert EN.verdict("what time", 700, reply=meanwhile) == "echo"


def test_words_ignore_punctuation_case_and_annotations() -> None:
    assert words_of("Uh-huh... [laughs] Right!") == ["uh", "huh", "right"]


def test_per_personality_list_and_language() -> None:
    own = Judge(InterruptionPolicy(backchannels=["go on", "aha"], min_words=1), "en")
    assert own.verdict("Go on.", 600) == "backchannel"
    assert own.verdict("yeah", 600) == "real"  # its own list replaces the built-in one; min_words 1
    assert Judge(InterruptionPolicy(), "zh-CN").verdict("嗯嗯", 600) == "backchannel"
    assert Judge(InterruptionPolicy(backchannels=[]), "en").verdict("okay sure", 600) == "real"


def _write(tmp: Path, extra: str) -> Path:
    (tmp / "p.yaml").write_text(f"id: p\nname: P\nsystem_prompt: hi\n{extra}", encoding="utf-8")
    return tmp


def test_yaml_interruption_settings(tmp_path: Path) -> None:
    extra = "interruption:\n  mode: cancel\n  min_words: 3\n  resume_after_ms: 900\n  backchannels: [aha]\n"
    p = load_personalities(_write(tmp_path, extra))["p"]
    assert (p.interruption.mode, p.interruption.min_words, p.interruption.resume_after_ms) == ("cancel", 3, 900)
    assert p.interruption.backchannels == ["aha"]


@pytest.mark.parametrize(
    "bad",
    [
        "interruption:\n  mode: later\n",
        "interruption:\n  min_words: 0\n",
        "interruption:\n  resume_after_ms: 50\n",
        "interruption:\n  backchannels: ['']\n",
        "interruption:\n  pause: true\n",
    ],
)
def test_yaml_interruption_settings_are_validated(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PersonalityError):
        load_personalities(_write(tmp_path, bad))
