"""Text-to-speech: the engine interface, providers, the chunker, the per-session synthesizer, the cache."""

from .base import TTSEngine
from .cache import MemoryTTSCache, TTSCache, cache_key
from .chunker import SentenceChunker
from .synthesizer import OUTPUT_RATE, SpeechChunk, SpeechSynthesizer

__all__ = [
    "OUTPUT_RATE",
    "MemoryTTSCache",
    "SentenceChunker",
    "SpeechChunk",
    "SpeechSynthesizer",
    "TTSCache",
    "TTSEngine",
    "cache_key",
]
