"""Text side of the WER benchmark: the held-out sentences, the normalizer, word error counting.

Why a normalizer: Whisper writes "3:30", "twenty-five" or "25%" as it likes; WER should count
misheard words, not spelling conventions. Lowercase, numbers spelled out, punctuation dropped.
"""

from __future__ import annotations

import re

# Held out: none of these was used to tune the pipeline (tests and the latency benchmark say
# "What time is it in Paris right now?"). Everyday assistant requests, some with numbers.
SENTENCES = (
    "Please set a timer for fifteen minutes.",
    "Can you remind me to call my sister tomorrow morning?",
    "The train to Boston leaves at seven thirty.",
    "I would like to order two large pizzas with extra cheese.",
    "How many kilometers is it from here to the airport?",
    "Turn off the lights in the kitchen and the living room.",
    "My flight number is four hundred and twelve.",
    "What is the weather going to be like this weekend?",
    "Add milk, eggs and bread to my shopping list.",
    "She paid thirty five dollars for the concert tickets.",
    "Could you read me the latest news about the election?",
    "The meeting has been moved to Thursday afternoon.",
    "Play some relaxing music while I cook dinner.",
    "How do I say good morning in Spanish?",
    "We need to leave the house before eight o'clock.",
    "Send a message to John saying I will be late.",
    "The package should arrive within three business days.",
    "Tell me a short story about a brave little dog.",
    "What is the capital city of Australia?",
    "I forgot my password and cannot log in.",
    "Book a table for four people at the Italian restaurant.",
    "The temperature dropped to minus ten degrees last night.",
    "Please speak a little more slowly.",
    "Which movie won the award for best picture last year?",
    "Remind me to water the plants every Sunday.",
    "The library closes at nine in the evening.",
    "How much sugar should I put in the cake?",
    "My daughter is starting school in September.",
    "Find me a cheap hotel near the beach.",
    "Cancel my appointment with the dentist on Friday.",
    "The children built a huge castle out of snow.",
    "Is it going to rain before the game starts?",
)

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def spell(n: int) -> str:
    """An integer in words, without "and" ("four hundred and twelve" is normalized to match)."""
    if n < 0:
        return "minus " + spell(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return spell(n // size) + " " + name + ("" if rest == 0 else " " + spell(rest))
    raise AssertionError(n)


_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_MONEY = re.compile(r"\$(\d+(?:,\d{3})*)(?:\.(\d{2}))?")
_PERCENT = re.compile(r"(\d+)\s*%")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*")
_PUNCT = re.compile(r"[^a-z0-9' ]+")
_FILLERS = {"uh", "um", "hmm"}
_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
             "nine": "ninth", "twelve": "twelfth"}  # fmt: skip


def _ordinal(n: int) -> str:
    words = spell(n).split()
    last = words[-1]
    words[-1] = _ORDINALS.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return " ".join(words)


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m[1]), int(m[2])
    if minute == 0:
        return f"{spell(hour)} o'clock"
    return f"{spell(hour)} {('oh ' + spell(minute)) if minute < 10 else spell(minute)}"


def _money(m: re.Match[str]) -> str:
    dollars = int(m[1].replace(",", ""))
    cents = f" {spell(int(m[2]))} cents" if m[2] and int(m[2]) else ""
    return f"{spell(dollars)} dollars{cents}"


def normalize(text: str) -> list[str]:
    """Words to compare: lowercase, numbers spelled out, punctuation and fillers removed."""
    t = text.lower().replace("’", "'")
    t = _TIME.sub(_time, t)
    t = _MONEY.sub(_money, t)
    t = _PERCENT.sub(lambda m: f"{m[1]} percent", t)
    t = _ORDINAL.sub(lambda m: _ordinal(int(m[1])), t)
    t = _NUMBER.sub(lambda m: f" {spell(int(m[0].replace(',', '')))} ", t)
    t = t.replace("-", " ").replace("o'clock", "oclock").replace("hundred and ", "hundred ")
    t = _PUNCT.sub(" ", t)
    words = [w.strip("'") for w in t.split()]
    return [w for w in words if w and w not in _FILLERS]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(pairs: list[tuple[str, str]]) -> float:
    """Corpus WER of (reference, hypothesis) pairs: total edits / total reference words."""
    errors = words = 0
    for ref, hyp in pairs:
        r = normalize(ref)
        errors += edit_distance(r, normalize(hyp))
        words += len(r)
    return errors / words if words else 0.0
