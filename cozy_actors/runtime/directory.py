"""Registry of live actors in this process.

Why: transports reconnecting to a session (or the HTTP edge routing a request) must find the actor
for an id in O(1), and diagnostics need "all conversation actors" without scanning everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cozy_actors.runtime.actor import ActorRef

__all__ = ["Directory"]


class Directory:
    """Live actors by id (one process). Lookups are O(1).

    An entry lives from spawn until the actor has fully stopped. A stopping actor may be replaced by a
    new one with the same id; the old one's unregister then leaves the new entry alone.
    """

    def __init__(self) -> None:
        """Two indexes kept in step: by id, and by kind (for by_kind without a full scan)."""
        self._by_id: dict[str, ActorRef] = {}
        self._by_kind: dict[str, dict[str, ActorRef]] = {}

    def register(self, ref: ActorRef) -> None:
        """For the supervisor: add ``ref``, replacing any entry with the same id."""
        old = self._by_id.get(ref.actor_id)
        if old is not None:
            self._drop_kind(old)
        self._by_id[ref.actor_id] = ref
        self._by_kind.setdefault(ref.kind, {})[ref.actor_id] = ref

    def unregister(self, ref: ActorRef) -> bool:
        """For the supervisor: remove ``ref`` only if it is still the registered one for its id."""
        if self._by_id.get(ref.actor_id) is not ref:
            return False
        del self._by_id[ref.actor_id]
        self._drop_kind(ref)
        return True

    def get(self, actor_id: str) -> ActorRef | None:
        """The actor registered under ``actor_id`` (possibly stopping: check ``ref.alive``)."""
        return self._by_id.get(actor_id)

    def __contains__(self, actor_id: object) -> bool:
        return actor_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def ids(self) -> list[str]:
        """Snapshot of registered ids."""
        return list(self._by_id)

    def by_kind(self, kind: str) -> list[ActorRef]:
        """Snapshot of the actors of one kind (e.g. every conversation, to broadcast a notice)."""
        return list(self._by_kind.get(kind, {}).values())

    def _drop_kind(self, ref: ActorRef) -> None:
        bucket = self._by_kind.get(ref.kind)
        if bucket is not None and bucket.get(ref.actor_id) is ref:
            del bucket[ref.actor_id]
            if not bucket:
                del self._by_kind[ref.kind]
