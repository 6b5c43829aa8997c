"""Short-form Whisper decoding with a reduced audio context, for live utterances.

Why: Whisper's encoder always sees 30 s of audio, and that fixed cost (about 0.4–0.8 s for tiny.en
on two cores here) is what makes partials rare and finals late. CTranslate2 accepts shorter
encoder inputs; with the utterance zero-padded to at least 10 s the transcripts matched the 30 s
decode on our test sentences (WER 0.01 both) at about a fifth of the cost. Shorter contexts
(6 s or less) made the model loop, so the context never goes below 10 s. When it loops anyway
(typically on audio cut right at the end of speech, as a speculative final is), the repetition is
cut off at its first occurrence in English; in the multilingual model's other languages, which loop
in the reduced context far more often (Mandarin), the decode is redone with the full 30 s context,
as is one that runs to its length cap with no recognizable loop. Loops are found per word, and per
character in scripts written without spaces.

Text only (no timestamps): this serves streaming partials and finals, where speed matters and
segment times do not. Uploads go through faster-whisper's own `transcribe`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .base import SAMPLE_RATE, Segment, Transcript
from .hallucination import compression_ratio

MIN_CONTEXT_S = 10
MAX_CONTEXT_S = 30
FRAMES_PER_S = 100


def context_seconds(duration_s: float) -> int:
    """Audio context for an utterance: ≥ 10 s, ≥ the audio plus 2 s of silence, ≤ 30 s."""
    return int(min(MAX_CONTEXT_S, max(MIN_CONTEXT_S, math.ceil(duration_s + 2.0))))


# Scripts written without spaces: each character is a unit of the loop rule (a CJK "word" of one
# run of characters would hide "谢谢谢谢谢谢..." from it).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_UNIT = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")


def _norm(word: str) -> str:
    return word.lower().strip(".,!?;:\"'，。！？、")


def loop_start(words: list[str]) -> int | None:
    """Where Whisper started looping: the index after the first occurrence of a phrase of ≥ 3
    words repeated back to back (or of one word said three times); None when it did not loop."""
    norm = [_norm(w) for w in words]
    n = len(norm)
    for i in range(n - 2):
        if norm[i] and norm[i] == norm[i + 1] == norm[i + 2]:
            return i + 1
    best: int | None = None
    for k in range(3, n // 2 + 1):
        for i in range(n - 2 * k + 1):
            if norm[i : i + k] == norm[i + k : i + 2 * k]:
                best = i + k if best is None else min(best, i + k)
                break
    return best


def has_loop(words: list[str]) -> bool:
    return loop_start(words) is not None


def cut_loop(text: str) -> tuple[str, int | None]:
    """(the text before its repetition loop, how many units that kept; None when it did not loop).
    Units are words, and single characters of scripts written without spaces."""
    spans = list(_UNIT.finditer(text))
    cut = loop_start([m.group() for m in spans])
    if cut is None:
        return text, None
    return text[: spans[cut - 1].end()].strip(), cut


class ShortFormDecoder:
    """Wraps a loaded faster-whisper `WhisperModel`; thread-safe like the model itself."""

    def __init__(self, model: Any) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self.model = model
        self._tokenizer_cls = Tokenizer
        self.multilingual = bool(model.model.is_multilingual)
        base = Tokenizer(model.hf_tokenizer, self.multilingual, task="transcribe", language="en")
        self.suppress = list(get_suppressed_tokens(base, [-1]))
        self._tokenizers: dict[str, Any] = {"en": base}

    def _tokenizer(self, language: str) -> Any:
        tok = self._tokenizers.get(language)
        if tok is None:
            tok = self._tokenizers[language] = self._tokenizer_cls(
                self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language
            )
        return tok

    def decode(
        self, audio: np.ndarray, *, language: str | None, prompt: str | None, beam_size: int = 1
    ) -> Transcript | None:
        """The transcript, or None when the reduced context looped (use the full decode)."""
        import ctranslate2

        duration = len(audio) / SAMPLE_RATE
        ctx = context_seconds(duration)
        if ctx >= MAX_CONTEXT_S:
            return None
        padded = np.zeros(ctx * SAMPLE_RATE, dtype=np.float32)
        padded[: len(audio)] = audio
        features = self.model.feature_extractor(padded)[:, : ctx * FRAMES_PER_S]
        if features.shape[1] < ctx * FRAMES_PER_S:
            features = np.pad(features, ((0, 0), (0, ctx * FRAMES_PER_S - features.shape[1])))
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])))
        if not self.multilingual:
            language = "en"
        elif not language:
            language = self.model.model.detect_language(encoded)[0][0][0][2:-2]
        tok = self._tokenizer(language)
        tokens: list[int] = []
        if prompt:
            tokens = [tok.sot_prev, *tok.encode(" " + prompt.strip())[-(self.model.max_length // 2 - 1) :]]
        tokens += [*tok.sot_sequence, tok.no_timestamps]
        cap = min(self.model.max_length, len(tokens) + int(duration * 12) + 16)
        result = self.model.model.generate(
            encoded,
            [tokens],
            beam_size=beam_size,
            max_length=cap,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self.suppress,
        )[0]
        ids = [t for t in result.sequences_ids[0] if t < tok.eot]
        whole = tok.decode(ids).replace("\ufffd", "").strip()  # a character cut mid-byte at the cap
        text, cut = cut_loop(whole)
        if cut is not None and language != "en":
            # Whisper's other languages loop in the reduced context where the 30 s one often does
            # not (Mandarin on the zh pack: "谢谢谢谢..." here, "谢谢你个朋友,再见" there).
            return None
        # A decode that loops from its first word ("ahh ahh ahh ...", on humming) holds no speech:
        # its compression ratio is the loop's, for the hallucination filter to judge.
        ratio = compression_ratio(whole) if cut is not None and cut <= 1 else 0.0
        if cut is None and len(tokens) + len(ids) >= cap - 1:
            return None  # ran to the cap without a recognizable loop: decode with the full context
        avg_logprob = result.scores[0] * len(ids) / (len(ids) + 1) if ids else -10.0
        no_speech = float(result.no_speech_prob)  # the caller's hallucination filter judges these
        segment = Segment(
            0, 0.0, round(duration, 3), " " + text if text else "", avg_logprob, no_speech, ratio, 0.0, tuple(ids)
        )
        return Transcript(
            text=text, language=language, duration=round(duration, 3), segments=(segment,) if text else ()
        )
