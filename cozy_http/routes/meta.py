"""Models, personalities, liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from cozy_core.errors import CozyError, NotFound

from ..auth import bearer_token
from ..context import current_request_id


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def list_models(request: Request) -> Response:
    return _json({"object": "list", "data": request.app.state.services.llms.models()})


async def get_model(request: Request) -> Response:
    model_id = request.path_params["model"]
    for model in request.app.state.services.llms.models():
        if model["id"] == model_id:
            return _json(model)
    raise NotFound(f"model {model_id!r} not found", code="RESOURCE_MODEL_NOT_FOUND", param="model")


async def list_personalities(request: Request) -> Response:
    items = [p.public() for p in request.app.state.services.personalities.all()]
    return _json({"object": "list", "data": items})


async def get_personality(request: Request) -> Response:
    pid = request.path_params["personality_id"]
    p = request.app.state.services.personalities.get(pid)
    if p is None:
        raise NotFound(f"personality {pid!r} not found", param="personality_id")
    return _json(p.public())


async def health(request: Request) -> Response:
    """Liveness: the process and its event loop answer. Never touches engines."""
    return _json({"status": "ok"})


async def ready(request: Request) -> Response:
    """Readiness: started and engines healthy; 503 otherwise so a balancer stops routing here.

    /ready is public, so everyone gets the status and each check's `ok`; the details (exception
    text, hostnames, pool and queue figures) only an admin's bearer token sees."""
    services = request.app.state.services
    ok, checks = await services.readiness()
    if not await _is_admin(request, services):
        checks = {name: {"ok": _check_ok(check)} for name, check in checks.items()}
    return _json({"status": "ready" if ok else "not_ready", "checks": checks}, 200 if ok else 503)


def _check_ok(check: Any) -> bool:
    if isinstance(check, dict):
        return bool(check.get("ok", not check.get("shutting_down", False)))  # stats without `ok`: fine
    return bool(check)


async def _is_admin(request: Request, services: Any) -> bool:
    """Optional authentication on a public path: a valid admin token, else the public view."""
    token = bearer_token(request.scope)
    if token is None and services.auth.enabled:
        return False
    try:
        principal = await services.auth.authenticate(token, request_id=current_request_id(), path=request.url.path)
    except CozyError:
        return False
    return principal.is_admin


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
