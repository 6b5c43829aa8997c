"""Pause-then-decide barge-in: user speech over a reply pauses it; its words decide what happens.

Why: a cough, a noise burst or an "mm-hmm" over a reply should not kill it. The reply's audio
stops at once (as a cancel would), but its LLM/TTS run on (bounded, see audio_out.AHEAD_MS); the
utterance is then judged: no words, noise (shorter than `min_speech_ms`, or fewer than
`min_words` words) or only backchannel words -> the reply resumes from the first unheard sample;
a real interruption (>= `min_words` words, not all backchannels) -> it is cancelled and cut to
what was heard, as a plain barge-in. Nothing decided `resume_after_ms` after the user stopped
(or after the pause while speech goes on, at most HOLD_CAP times) -> it resumes; a late final
with real words still interrupts it (LiveKit's regressions were a paused reply
that never resumed, and a confirmed interruption that resumed: one owner decides, once).

Echo: without echo cancellation a speakerphone hears the bot's own voice, and its transcript is the
reply's own words, those it played while the utterance was heard (from ECHO_LEAD_MS before the
barge-in: echo delay, VAD onset; a user who repeats the reply's earlier words is no echo).
An utterance with fewer words that are not those than a real turn needs
(`min_words`), or where they are under a third of its words (the STT mishears an echo), is judged
"echo" and the reply resumes; after that, speech over the same reply no longer pauses it at once
but only once its words are real (not the reply's), so the echo cannot stutter the reply; a
real interruption then cuts it at its first real words instead of its first sound.

Runs on the actor's task like the rest of the session; the deadline is a message to the actor.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from cozy_actors.observability.metrics import FALSE_INTERRUPTIONS, INTERRUPTIONS, INTERRUPTIONS_RESUMED
from cozy_core.errors import CozyError

if TYPE_CHECKING:
    from cozy_actors.personalities import InterruptionPolicy

    from .response import ResponseRun
    from .session import RealtimeSession

MODES = ("pause", "cancel")
ECHO_LEAD_MS = 1200.0  # an echo heard at the barge-in began this much earlier in the reply, at most
HOLD_CAP = 4  # speech that goes on (no words, no end) holds a reply at most this many resume_after_ms
# Words that acknowledge without taking the turn, per language (a personality may set its own).
BACKCHANNELS: dict[str, tuple[str, ...]] = {
    "en": ("mm-hmm", "uh-huh", "yeah", "right", "okay", "ok", "mhm", "hmm", "sure", "i see", "mm", "mmm"),
    "zh": ("嗯", "嗯嗯", "对", "对对", "好", "好的", "是", "是的", "哦", "啊"),
}
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")  # "[coughing]", "(noise)": not words
_WORD = re.compile(r"[\w']+")  # "mm-hmm" and "Mm hmm" are the same two words


def interruption_policy(base: InterruptionPolicy, overrides: dict[str, Any]) -> InterruptionPolicy:
    """`base` (the personality's) with a connection's overrides, validated; CozyError names the bad one."""
    merged = {**base.model_dump(), **overrides}
    try:
        return type(base).model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "mode"
        param = "cozy_interruption" if name == "mode" else f"cozy_interruption_{name}"
        raise CozyError(f"{param}: {first['msg']}", code="VALIDATION_ERROR", status=400, param=param) from None


@dataclass(slots=True)
class InterruptionDeadline:
    """`resume_after_ms` after a pause: resume unless something was decided (actor message)."""

    generation: int


def words_of(text: str) -> list[str]:
    """The spoken words of a transcript: lower case, no punctuation, no [sound] annotations."""
    return [w.strip("'") for w in _WORD.findall(_ANNOTATION.sub(" ", text.lower())) if w.strip("'")]


def _phrases(words: list[str] | tuple[str, ...]) -> list[tuple[str, ...]]:
    out = {tuple(words_of(w)) for w in words}
    return sorted((p for p in out if p), key=len, reverse=True)


def only_backchannels(words: list[str], phrases: list[tuple[str, ...]]) -> bool:
    """True when `words` is a sequence of backchannel phrases and nothing else."""
    at = 0
    while at < len(words):
        for phrase in phrases:
            if tuple(words[at : at + len(phrase)]) == phrase:
                at += len(phrase)
                break
        else:
            return False
    return bool(words)


class Judge:
    """Classifies an utterance heard over a reply: "real", or why it is not one."""

    def __init__(self, policy: InterruptionPolicy, language: str) -> None:
        self.min_words = policy.min_words
        self.min_speech_ms = policy.min_speech_ms
        listed = policy.backchannels
        if listed is None:
            listed = list(BACKCHANNELS.get(language.split("-")[0].lower(), ()))
        self.phrases = _phrases(listed)

    def verdict(self, text: str, speech_ms: float | None = None, reply: str = "") -> str:
        """`reply`: the text of the reply it was heard over (its echo is its own words)."""
        words = words_of(text)
        if not words:
            return "no_words"
        if speech_ms is not None and speech_ms < self.min_speech_ms:
            return "noise"  # too short to be speech meant for us, whatever the STT made of it
        if only_backchannels(words, self.phrases):
            return "backchannel"
        if reply:  # the reply's own words (as the STT hears an echo: "here's" for "here is")
            said = {w.split("'")[0] for w in words_of(reply)}
            others = sum(w.split("'")[0] not in said for w in words)
            if others < len(words) and (others < self.min_words or others <= len(words) // 3):
                return "echo"  # fewer other words than a real turn needs, or under a third of them
        return "real" if len(words) >= self.min_words else "noise"


@dataclass(slots=True)
class _Heard:
    run: ResponseRun
    start_ms: float
    paused_at: float  # loop time of the pause
    words: bool = False  # a partial had words
    speaking: bool = True  # no speech_stopped yet
    paused: bool = True  # False: heard over a reply that echoed before; it plays on until real words
    played_from: float = 0.0  # the reply's played position at the barge-in
    real_hypotheses: int = 0  # consecutive partial hypotheses with real words (echoing replies)

    def echo_of(self) -> str:
        """The reply's words played while this was heard: what its echo can be."""
        speech = self.run.speech
        if speech is None:
            return ""
        return speech.played_text(self.played_from - ECHO_LEAD_MS, self.run.heard_ms())


class PauseThenDecide:
    """The pending decisions of one session (the utterances heard over its paused reply)."""

    def __init__(self, session: RealtimeSession) -> None:
        self.s = session
        self._open: dict[int, _Heard] = {}  # utterance -> the reply it paused
        self._generation = 0
        self._timer: Any = None
        self._echoed: ResponseRun | None = None  # the reply whose own echo was heard: not paused again

    @property
    def mode(self) -> str:
        return self.s.interruption.mode

    def judge(self) -> Judge:
        return Judge(self.s.interruption, self.s.resolved.personality.voice.language)

    def barge_in(self, utterance: int, start_ms: float) -> bool:
        """Speech started over `s.response`: pause it (True), or leave it to a plain cancel (False)."""
        run = self.s.response
        if run is None or self.mode != "pause" or not run.audio:
            return False
        if run.cancel_reason is None:
            echoing = self._echoed is run  # it echoes: only real words will stop it
            at = run.heard_ms()
            if not echoing:
                run.pause()
            now = asyncio.get_running_loop().time()
            self._open[utterance] = _Heard(run, start_ms, now, paused=not echoing, played_from=at)
            self._arm()
        return True

    def partial(self, utterance: int, stable: str, hypothesis: str = "") -> None:
        """A partial transcript: real stable words cut the reply. One that plays on over its own
        echo is also judged on the latest hypothesis: there the user's words come in the unstable
        tail, after the echo's, and stable words may not grow for seconds."""
        heard = self._open.get(utterance)
        if heard is None or not (stable or (hypothesis and not heard.paused)):
            return
        heard.words = heard.words or bool(stable)
        judge, echo = self.judge(), heard.echo_of()
        if stable and judge.verdict(stable, reply=echo) == "real":
            self._interrupt(heard.run, stable)
        elif not heard.paused and hypothesis:
            # Two hypotheses in a row with real words: one alone may be an echo misheard ("Go
            # here's a fair." for "Here is a fairly..."), the user's words stay in the next one.
            real = judge.verdict(hypothesis, reply=echo) == "real"
            heard.real_hypotheses = heard.real_hypotheses + 1 if real else 0
            if heard.real_hypotheses >= 2:
                self._interrupt(heard.run, hypothesis)

    def stopped(self, utterance: int, end_ms: float) -> None:
        """VAD end of speech: a burst shorter than min_speech_ms with no words resumes now."""
        heard = self._open.get(utterance)
        if heard is None:
            return
        heard.speaking = False
        if not heard.words and end_ms - heard.start_ms < self.judge().min_speech_ms:
            self._resume_if_clear(heard.run, "noise", "", utterance)
        else:
            self._arm()  # the final is due: resume_after_ms from here is the safety net

    def final(self, utterance: int, text: str, start_ms: float, end_ms: float) -> bool:
        """The utterance's transcript: True when it is a user turn, False for a false interruption
        (its item is dropped by the caller, no response starts)."""
        heard = self._open.pop(utterance, None)
        if heard is None:
            return True
        verdict = self.judge().verdict(text, end_ms - start_ms, reply=heard.echo_of())
        if verdict == "real":
            self._interrupt(heard.run, text)
            return True
        if verdict == "echo":
            self._echoed = heard.run
        FALSE_INTERRUPTIONS.labels(reason=verdict).inc()
        self._resume_if_clear(heard.run, verdict, text)
        return False

    def deadline(self, msg: InterruptionDeadline) -> None:
        if msg.generation != self._generation:
            return
        now = asyncio.get_running_loop().time()
        hold = HOLD_CAP * self.s.interruption.resume_after_ms / 1000.0
        for run in {h.run for h in self._open.values()}:
            heard = [h for h in self._open.values() if h.run is run]
            if any(h.speaking for h in heard) and now - min(h.paused_at for h in heard) < hold:
                self._arm()  # the user is still talking: their words will decide
                continue
            self._resume(run, "noise" if any(h.words for h in heard) else "no_words", "")

    def truncated(self, run: ResponseRun) -> None:
        """A client truncate of the paused reply: the client stopped it; that wins (a real cut)."""
        if run.paused and run.cancel_reason is None:
            self._interrupt(run, "")

    def reset(self) -> None:
        """The input pipeline was rebuilt: no decision will come; paused replies go on."""
        runs = {h.run for h in self._open.values()}
        self._open.clear()
        for run in runs:
            self._resume(run, "no_words", "")

    # --- outcomes -------------------------------------------------------------------------------
    def _arm(self) -> None:
        self._generation += 1
        if self._timer is not None:
            self._timer.cancel()
        delay = self.s.interruption.resume_after_ms / 1000.0
        msg = InterruptionDeadline(self._generation)
        self._timer = asyncio.get_running_loop().call_later(delay, self._tell, msg)

    def _tell(self, msg: InterruptionDeadline) -> None:
        try:
            self.s.tell(msg)
        except Exception:
            pass  # the actor is gone or full: a full mailbox will be drained and the reply ends anyway

    def _resume_if_clear(self, run: ResponseRun, reason: str, text: str, keep: int | None = None) -> None:
        """Resume unless another utterance heard over the same reply is still undecided."""
        if any(h.run is run for u, h in self._open.items() if u != keep):
            return
        self._resume(run, reason, text)  # `keep` stays open: its final still judges (and drops) it

    def _resume(self, run: ResponseRun, reason: str, text: str) -> None:
        if run.resume(reason, text):
            INTERRUPTIONS_RESUMED.labels(reason=reason).inc()

    def _interrupt(self, run: ResponseRun, text: str) -> None:
        for u in [u for u, h in self._open.items() if h.run is run]:
            del self._open[u]
        if run.cancel_reason is None and self.s.response is run:
            INTERRUPTIONS.labels(mode="pause").inc()
            run.interrupt(text)
