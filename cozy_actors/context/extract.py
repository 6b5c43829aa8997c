"""Deterministic fact extraction from user messages ("my name is X", "I like Y", "remember that Z").

Deliberately simple and predictable: no model call on the write path, and the same sentence always
gives the same facts (tests and operators can reason about what is remembered).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .base import TurnRecord, content_text

_END = r"([^.!?\n]{1,120})"
_PATTERNS: list[tuple[re.Pattern[str], str, str | None]] = [
    # A second capitalised word is a surname ("Ada Lovelace"); "Ada and ..." stops at "Ada".
    (re.compile(r"(?i:\bmy name is) ([A-Za-z][\w'-]*(?: [A-Z][\w'-]*)?)"), "The user's name is {0}", "name"),
    (re.compile(r"\bcall me ([A-Za-z][\w'-]*)", re.I), "The user's name is {0}", "name"),
    (re.compile(r"\bI live in " + _END, re.I), "The user lives in {0}", "location"),
    (re.compile(r"\bI(?:'m| am) (\d{1,3}) years old", re.I), "The user is {0} years old", "age"),
    (re.compile(r"\bI (?:really )?(?:like|love|enjoy) " + _END, re.I), "The user likes {0}", "likes"),
    (re.compile(r"\bremember (?:that )?" + _END, re.I), "{0}", None),
]


@dataclass
class Extracted:
    facts: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)  # name/location/age: str; likes: list


def extract(records: list[TurnRecord]) -> dict[str, Extracted]:
    """Facts and profile attributes per user, from the user messages of finished turns."""
    out: dict[str, Extracted] = {}
    for rec in records:
        got = out.setdefault(rec.user_id, Extracted())
        for m in rec.messages:
            if m.get("role") != "user":
                continue
            text = content_text(m.get("content"))
            for pattern, template, key in _PATTERNS:
                for match in pattern.finditer(text):
                    value = match.group(1).strip().rstrip(",;")
                    if not value:
                        continue
                    fact = template.format(value)
                    if fact not in got.facts:
                        got.facts.append(fact)
                    if key == "likes":
                        likes = got.attributes.setdefault("likes", [])
                        if value not in likes:
                            likes.append(value)
                    elif key:
                        got.attributes[key] = value
    return {u: e for u, e in out.items() if e.facts or e.attributes}


def summarize(attributes: dict[str, Any]) -> str:
    """A one-line profile summary from the attributes."""
    parts = []
    if attributes.get("name"):
        parts.append(f"Name: {attributes['name']}")
    if attributes.get("age"):
        parts.append(f"Age: {attributes['age']}")
    if attributes.get("location"):
        parts.append(f"Lives in: {attributes['location']}")
    if attributes.get("likes"):
        parts.append("Likes: " + ", ".join(attributes["likes"][-10:]))
    return ". ".join(parts)
