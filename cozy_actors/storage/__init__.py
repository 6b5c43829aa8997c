"""Storage interfaces the conversation uses; implementations never import engines."""

from .base import ConversationStore, StoredSession
from .memory import InMemoryConversationStore

__all__ = ["ConversationStore", "InMemoryConversationStore", "StoredSession"]
