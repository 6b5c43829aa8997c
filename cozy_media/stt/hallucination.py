"""Hallucination filter: Whisper turns noise, music, breathing and silence into text ("Thank you.",
"[BLANK_AUDIO]", "you"); in a conversation that text becomes a user turn and a reply. Segments
are dropped when:

- the model itself says there is no speech: no-speech probability above `no_speech_threshold`
  with an average log-probability below `logprob_threshold` (Whisper's own rule);
- the decode is very unsure of every word: average log-probability below `min_logprob` (loud
  breathing came out as "I'm not going to be able to do that." at -1.76; the worst real speech of
  the WER benchmark scored -0.63);
- the text repeats itself: gzip compression ratio above `compression_ratio_threshold` (a loop);
- the text is a known phantom phrase (a list in the config) that the decode is not sure of:
  these phrases are also things people really say ("Thank you."), so one is kept when its
  average log-probability is at least `phantom_keep_logprob` and its no-speech probability at
  most `phantom_keep_no_speech`; a bracketed tag ("[BLANK_AUDIO]", "(music)", "*sighs*") is
  never speech and always goes.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import replace

from pydantic import Field

from cozy_core.engines import EngineOptions

from .base import Segment, Transcript

PHANTOM_PHRASES = (
    "thank you",
    "thank you very much",
    "thanks for watching",
    "thank you for watching",
    "thanks for watching and see you next time",
    "please subscribe",
    "subscribe to my channel",
    "like and subscribe",
    "see you next time",
    "see you in the next video",
    "bye",
    "bye bye",
    "you",
    "so",
    "oh",
    "a",
    "ah",
    "eh",
    "uh",
    "um",
    "hmm",
    "the end",
    "silence",
    "music",
    "applause",
    "blank audio",
    "subtitles by the amara org community",
)

_TAG = re.compile(r"^\s*(\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪+|♫+|\.\.\.|…)\s*$")
_TAGS = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|[♪♫]+")
_WORDS = re.compile(r"[^\w']+|_")  # any script's letters: Chinese text is words, not an empty "tag"
_REPEATS = re.compile(r"(.)\1+")  # "Ahhhh!" and "ah", "Hmmm" and "hmm" are the same phantom


class HallucinationOptions(EngineOptions):
    enabled: bool = True
    no_speech_threshold: float = Field(0.6, ge=0, le=1)
    logprob_threshold: float = Field(-1.0, le=0)
    min_logprob: float = Field(-1.5, le=0)
    compression_ratio_threshold: float = Field(2.4, gt=1)
    phantom_phrases: list[str] = Field(default_factory=lambda: list(PHANTOM_PHRASES))
    # A phantom phrase stays when decoded this surely. Measured on tiny.en: spoken "Thank you.",
    # "Bye.", "You." scored -0.09..-0.58 with no-speech 0.04..0.29; breathing's "Ah!" -0.86..-1.27
    # (no-speech 0.2..0.5), silence's "you" -0.65 (no-speech 0.99).
    phantom_keep_logprob: float = Field(-0.6, le=0)
    phantom_keep_no_speech: float = Field(0.35, ge=0, le=1)


def _key(text: str) -> str:
    return _REPEATS.sub(r"\1", " ".join(_WORDS.sub(" ", text.lower().replace("’", "'")).split()))


def compression_ratio(text: str) -> float:
    """Whisper's loop detector: bytes of the text over bytes of its zlib compression."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class HallucinationFilter:
    """Applied to every decode of one engine; stateless, so one instance serves all threads."""

    def __init__(self, options: HallucinationOptions | None = None) -> None:
        self.options = options or HallucinationOptions()
        self._phantoms = frozenset(_key(p) for p in self.options.phantom_phrases if _key(p))

    def reason(self, segment: Segment, *, scored: bool = True) -> str | None:
        """Why this segment is not speech, or None to keep it. `scored=False`: the provider gave
        no probabilities (only the text rules apply, and a phantom phrase counts as unsure)."""
        o = self.options
        text = segment.text.strip()
        if not text:
            return None
        if scored and segment.no_speech_prob > o.no_speech_threshold and segment.avg_logprob < o.logprob_threshold:
            return "no_speech"
        if scored and segment.avg_logprob < o.min_logprob:
            return "low_logprob"
        ratio = segment.compression_ratio or compression_ratio(text)
        if ratio > o.compression_ratio_threshold:
            return "compression_ratio"
        if _TAG.match(text) or not _key(_TAGS.sub(" ", text)):
            return "tag"
        if _key(_TAGS.sub(" ", text)) in self._phantoms:
            sure = segment.avg_logprob >= o.phantom_keep_logprob and segment.no_speech_prob <= o.phantom_keep_no_speech
            if not (scored and sure):
                return "phantom"
        return None

    def apply(self, transcript: Transcript) -> Transcript:
        """The transcript without the segments that are not speech (the text rebuilt from the rest)."""
        if not self.options.enabled or not transcript.text.strip():
            return transcript
        if not transcript.segments:  # a provider without segments: only the text rules apply
            probe = Segment(0, 0.0, transcript.duration, transcript.text)
            return replace(transcript, text="") if self.reason(probe, scored=False) else transcript
        kept = tuple(s for s in transcript.segments if self.reason(s) is None)
        if len(kept) == len(transcript.segments):
            return transcript
        text = "".join(s.text for s in kept).strip()
        if text and self.reason(Segment(0, 0.0, 0.0, text), scored=False) == "tag":
            text = ""
        return replace(transcript, text=text, segments=kept)
