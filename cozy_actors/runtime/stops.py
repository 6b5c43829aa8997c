"""Why an actor stopped, and the errors an asker sees: the names every caller of the runtime catches.

Why a module of its own: transports and services import these without the actor machinery.
"""

from __future__ import annotations

import asyncio
from enum import Enum

from cozy_actors.runtime.mailbox import MailboxClosed

__all__ = ["ActorCrashed", "ActorStopped", "AskTimeout", "StopReason"]


class StopReason(str, Enum):  # noqa: UP042 - str+Enum is the documented API shape
    """Why an actor stopped; exported as the ``reason`` label of ACTOR_STOPS."""

    NORMAL = "normal"
    MAX_DURATION = "max_duration"
    IDLE_TIMEOUT = "idle_timeout"
    SHUTDOWN = "shutdown"
    CRASHED = "crashed"  # restart budget spent
    REVOKED = "revoked"  # its owner's key was revoked or the user disabled
    DELETED = "deleted"  # the stored session it writes to was deleted
    TAKEN_OVER = "taken_over"  # another actor took its id (a call took over the conversation)


class AskTimeout(asyncio.TimeoutError):
    """ask() timed out; the message may still be handled later, the caller just stops waiting."""


class ActorCrashed(RuntimeError):
    """The handler raised while processing your ask; the original exception is ``__cause__``."""


class ActorStopped(MailboxClosed, RuntimeError):
    """The actor is stopping or stopped: tell/ask refused, or a queued ask will never be answered.

    It subclasses MailboxClosed so callers can catch either name.
    """
