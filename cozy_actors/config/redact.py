"""Redact a configuration for display (`GET /v1/admin/config`, `cozy config check`): by key AND by value.

By key alone is not enough: a TURN `credential`, an MCP server's `args: ["--token", "..."]` or
`env: {DB: "postgres://u:pass@h/db"}`, and a URL's `?api_key=` carry secrets under names that say
nothing. So, besides SecretStr fields and secret-named keys:

- URL userinfo loses its password (`postgres://u:***@h`; a lone user part, often a token, goes too)
  and secret-named query parameters their value (`?token=***`), wherever a URL appears in a string;
- a dict holding a `credential`/`password` (an ICE server) has its `username` redacted as well;
- in command lines (`args`) the value after a secret-named flag, `--flag=value` and `NAME=value`
  with a secret-named name are redacted, and in `args`/`env` any value that looks like a token
  (a known prefix such as `sk-`/`ghp_`/`xoxb-`, a JWT, or a long random-looking string).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from pydantic import SecretStr

MASK = "***"
# Key names that hold secrets (wider than the loader's literal-secret check: display only).
SECRET_NAME = re.compile(
    r"(secret|passw|passwd|pwd|api_?key|private_?key|credential|authorization|cookie|(^|[_-])token$|(^|[_-])key$"
    r"|^token|access_?key|auth_?token|session_?key|signature|^sig$|^pass$)",
    re.I,
)
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:?#]*)(?::(?P<pw>[^@/\s]*))?@")
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z0-9_.-]*?)(?:token|key|secret|passw|pwd|auth|sig|signature|credential)[A-Za-z0-9_.-]*=)"
    r"(?P<value>[^&#\s]+)",
    re.I,
)
_TOKEN_PREFIX = re.compile(
    r"^(sk-|sk_live_|sk_test_|rk_live_|pk_live_|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|glpat-|xox[abposr]-|hf_|AKIA|ASIA|AIza"
    r"|ya29\.|Bearer\s|Basic\s|eyJ[A-Za-z0-9_-]{8,}\.)"
)
_TOKENISH = re.compile(r"^[A-Za-z0-9_\-+=.~:]{20,}$")
_COMMAND_KEYS = frozenset({"args", "env", "command_args"})


def redact(value: Any, key: str = "", parent: str = "") -> Any:
    """`value` (plain data from model_dump, SecretStr kept) with every secret replaced by `***`."""
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else None
    if isinstance(value, dict):
        has_credential = any(isinstance(k, str) and re.search(r"credential|password", k, re.I) for k in value)
        out = {}
        for k, v in value.items():
            name = str(k)
            if has_credential and name.lower() == "username" and isinstance(v, str) and v:
                out[k] = MASK
            elif key == "env" and isinstance(v, str):
                out[k] = MASK if v and (SECRET_NAME.search(name) or looks_like_token(v)) else redact_text(v)
            else:
                out[k] = redact(v, name, key)
        return out
    if isinstance(value, list | tuple):
        if key in _COMMAND_KEYS and all(isinstance(v, str) for v in value):
            return redact_args(list(value))
        return [redact(v, key, parent) for v in value]
    if isinstance(value, str) and value:
        if SECRET_NAME.search(key):
            return MASK
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """A string with URL passwords, URL user tokens and secret query values masked."""
    if "://" in text:
        text = _URL_USERINFO.sub(_mask_userinfo, text)
    if "=" in text and ("?" in text or "&" in text or ";" in text):
        text = _QUERY_SECRET.sub(lambda m: m["name"] + MASK, text)
    if _TOKEN_PREFIX.match(text):
        return MASK
    return text


def _mask_userinfo(m: re.Match[str]) -> str:
    if m["pw"] is not None:
        return f"{m['scheme']}{m['user']}:{MASK}@"
    return f"{m['scheme']}{MASK}@" if m["user"] else m[0]


def redact_args(args: list[str]) -> list[str]:
    """A command line: secret flags' values, `--flag=value`, `NAME=value` and token-like words."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        name, eq, val = arg.partition("=")
        flag = name.lstrip("-")
        if eq and flag and SECRET_NAME.search(flag) and val and "://" not in name:
            out.append(f"{name}={MASK}")
        elif arg.startswith("-") and not eq and SECRET_NAME.search(flag):
            out.append(arg)
            hide_next = True
        elif looks_like_token(arg):
            out.append(MASK)
        else:
            out.append(redact_text(arg))
    return out


def looks_like_token(value: str) -> bool:
    """A known token prefix or JWT, or a long random-looking word (letters and digits, high entropy)."""
    if _TOKEN_PREFIX.match(value):
        return True
    if not _TOKENISH.match(value) or value.startswith(("-", ".", "~")):
        return False
    if not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.5
