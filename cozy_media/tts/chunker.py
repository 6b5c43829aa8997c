"""Split text, whole or as it streams in from an LLM, into chunks worth synthesizing.

Why: TTS can start speaking as soon as the first sentence is complete instead of waiting for the
whole reply, and short chunks keep first audio fast. Rules:
- a chunk ends at a sentence end (`.`, `!`, `?`, `…` and CJK marks, with closing quotes), once
  the next word is seen to start a new sentence (so "e.g. this" and "Dr. Smith" do not split),
  or at a line break;
- a sentence longer than `max_chars` is split at the last clause mark (`,` `;` `:` `—`) before
  the limit, else the last space, else hard at the limit; the first chunk's limit,
  `first_max_chars`, is smaller, because its synthesis time is the time to first audio;
- chunks with no letter or digit (stray punctuation) are dropped.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"([.!?…]+[\"'”’)\]]*)(\s+)|([。！？]+[」』”’)]*)(\s*)|(\s*\n\s*)")
_CLAUSE = re.compile(r"[,;:—–]\s+|\s[-–—]\s+")
_WORD_BEFORE = re.compile(r"(\w+)\W*$")
_SPOKEN = re.compile(r"\w")
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc eg ie inc ltd co corp no fig approx dept est mt ft jan feb mar apr jun jul "
    "aug sep sept oct nov dec".split()
)


class SentenceChunker:
    def __init__(
        self,
        *,
        max_chars: int = 250,
        first_max_chars: int = 60,
    ) -> None:
        self.max_chars = max(16, max_chars)
        self.first_max_chars = max(16, first_max_chars)
        self._buf = ""
        self.chunks_emitted = 0

    def push(self, text: str) -> list[str]:
        """Add streamed text; returns the chunks now complete (often none)."""
        self._buf += text
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """End of text: returns the remaining chunks."""
        out = self._drain(final=True)
        rest = self._buf.strip()
        self._buf = ""
        if rest:
            out.extend(self._accept(rest))
        return out

    def split(self, text: str) -> list[str]:
        """All chunks of a complete text."""
        return self.push(text) + self.flush()

    def reset(self) -> None:
        self._buf = ""
        self.chunks_emitted = 0

    # --- internals ----------------------------------------------------------------------------
    def _limit(self) -> int:
        return self.first_max_chars if self.chunks_emitted == 0 else self.max_chars

    def _accept(self, chunk: str) -> list[str]:
        chunk = chunk.strip()
        if not chunk or not _SPOKEN.search(chunk):
            return []
        self.chunks_emitted += 1
        return [chunk]

    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while self._buf:
            cut = self._next_cut(final)
            if cut is None:
                break
            end, resume = cut
            out.extend(self._accept(self._buf[:end]))
            self._buf = self._buf[resume:]
        return out

    def _next_cut(self, final: bool) -> tuple[int, int] | None:
        """(end of chunk, where the rest resumes), or None to wait for more text."""
        buf, limit = self._buf, self._limit()
        boundary = self._sentence_end(buf, final)
        if boundary is not None and boundary[0] <= limit:
            return boundary
        if len(buf) > limit or (boundary is not None and boundary[0] > limit):
            return self._split_long(buf, limit)
        return None

    def _sentence_end(self, buf: str, final: bool) -> tuple[int, int] | None:
        for m in _SENTENCE_END.finditer(buf):
            if m.group(5) is not None:  # line break
                if m.start() == 0:
                    continue
                return m.start(), m.end()
            if m.group(3) is not None:  # CJK sentence mark: no space needed
                return m.end(3), m.end()
            end, resume = m.end(1), m.end()
            if resume == len(buf):
                return (end, resume) if final else None  # the next word decides
            if buf[resume].islower():
                continue
            if m.group(1).startswith(".") and self._is_abbreviation(buf[: m.start(1)]):
                continue
            return end, resume
        return None

    @staticmethod
    def _is_abbreviation(before: str) -> bool:
        word = _WORD_BEFORE.search(before)
        if word is None:
            return False
        w = word.group(1)
        return w.lower().replace(".", "") in ABBREVIATIONS or (len(w) == 1 and w.isupper())

    @staticmethod
    def _split_long(buf: str, limit: int) -> tuple[int, int]:
        window = buf[: limit + 1]
        clauses = [m for m in _CLAUSE.finditer(window) if m.start() > limit // 3]
        if clauses:
            m = clauses[-1]
            return m.start() + 1, m.end()
        space = window.rfind(" ", limit // 3)
        if space > 0:
            return space, space + 1
        return limit, limit
