"""Abuse and fault suite (issue 10): real `cozy serve` processes, real clients, hostile input.

Each module starts the servers it needs with `start_cozy_server` (a throwaway PostgreSQL database
and Redis prefix each), so a test that kills or restarts a server never disturbs another module.
The shared e2e helpers are re-exported here so modules import from one place.
"""

from __future__ import annotations

from tests.e2e.conftest import (  # noqa: F401  (re-exported for the reliability modules)
    ADMIN_KEY,
    ERROR_KEYS,
    STUB_MODEL,
    CozyServer,
    assert_error_body,
    new_session_id,
    start_cozy_server,
    user,
)
