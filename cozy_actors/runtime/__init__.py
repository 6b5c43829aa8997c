"""Actor runtime: mailbox with a control lane, actors, supervisor, directory, loop-lag monitor.

Why a package of its own: conversations, transports and engines all build on these few names, and
nothing here knows about audio, HTTP or LLMs.
"""

from cozy_actors.runtime.actor import Actor, ActorRef
from cozy_actors.runtime.directory import Directory
from cozy_actors.runtime.loadmon import LoopLagMonitor
from cozy_actors.runtime.mailbox import Mailbox, MailboxClosed, MailboxFull, OverflowPolicy
from cozy_actors.runtime.stops import ActorCrashed, ActorStopped, AskTimeout, StopReason
from cozy_actors.runtime.supervisor import Supervisor, SupervisorFull, SupervisorPolicy

__all__ = [
    "Actor",
    "ActorCrashed",
    "ActorRef",
    "ActorStopped",
    "AskTimeout",
    "Directory",
    "LoopLagMonitor",
    "Mailbox",
    "MailboxClosed",
    "MailboxFull",
    "OverflowPolicy",
    "StopReason",
    "Supervisor",
    "SupervisorFull",
    "SupervisorPolicy",
]
