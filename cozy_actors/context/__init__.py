"""Personalization: knowledge, user profile and chat memory around each turn (README "Personalization")."""

from .base import ContextItem, ContextQuery, KnowledgeEngine, MemoryEngine, ProfileEngine, TurnRecord
from .service import UPDATE_TOPIC, ContextService, Prepared

__all__ = [
    "UPDATE_TOPIC",
    "ContextItem",
    "ContextQuery",
    "ContextService",
    "KnowledgeEngine",
    "MemoryEngine",
    "Prepared",
    "ProfileEngine",
    "TurnRecord",
]
