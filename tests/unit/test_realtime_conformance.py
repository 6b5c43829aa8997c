"""The GA conformance registry against the openai SDK's realtime types, the code and the README.

A GA event or session/response field the installed SDK knows and the registry does not fails here,
as does a README table that differs from the generated one, a "supported" server event the
realtime sources never name, or a field path that SessionConfig / ResponseParams does not have."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

from openai.types.realtime.realtime_client_event import RealtimeClientEvent
from openai.types.realtime.realtime_response_create_params import RealtimeResponseCreateParams
from openai.types.realtime.realtime_server_event import RealtimeServerEvent
from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest
from pydantic import BaseModel

from cozy_actors.realtime import conformance as c
from cozy_actors.realtime.client_events import ResponseParams
from cozy_actors.realtime.config import SessionConfig
from cozy_actors.realtime.session import HANDLERS

ROOT = Path(__file__).resolve().parents[2]


def _event_types(union: Any) -> set[str]:
    while typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    return {typing.get_args(m.model_fields["type"].annotation)[0] for m in typing.get_args(union)}


def _model(annotation: Any) -> type[BaseModel] | None:
    """The one pydantic model an annotation holds (Optional[X] -> X), else None."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def _paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        inner = _model(field.annotation)
        if path in c.CONTAINERS and inner is not None:
            out |= _paths(inner, path + ".")
        else:
            out.add(path)
    return out


def test_every_ga_client_event_has_an_entry_and_handlers_are_the_supported_ones() -> None:
    assert set(c.CLIENT_EVENTS) == _event_types(RealtimeClientEvent)
    assert set(HANDLERS) <= set(c.CLIENT_EVENTS)


def test_every_ga_server_event_has_an_entry_and_supported_ones_are_the_emitted_ones() -> None:
    ga = _event_types(RealtimeServerEvent)
    assert set(c.SERVER_EVENTS) == ga
    sources = "".join(
        p.read_text()
        for d in ("cozy_actors/realtime", "cozy_http/realtime", "cozy_http/webrtc")  # webrtc: output_audio_buffer.*
        for p in sorted((ROOT / d).glob("*.py"))
        if p.name != "conformance.py"
    )
    named = {e for e in ga if re.search(rf'"{re.escape(e)}"', sources)}
    assert {e for e, (status, _) in c.SERVER_EVENTS.items() if status == c.YES} == named


def test_every_ga_session_and_response_field_has_an_entry_that_the_code_has() -> None:
    rows = set(c.SESSION_FIELDS) - c.CONTAINERS  # a container may have a row of its own (null meaning)
    assert rows == _paths(RealtimeSessionCreateRequest)
    assert rows == _paths(SessionConfig)  # none missing from our model, none extra
    assert set(c.RESPONSE_FIELDS) == set(RealtimeResponseCreateParams.model_fields)
    assert set(c.RESPONSE_FIELDS) <= set(ResponseParams.model_fields)


def test_readme_table_is_the_generated_one() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/conformance.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
