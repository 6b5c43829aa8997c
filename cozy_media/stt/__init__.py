"""Speech-to-text: the engine interface, providers, and the per-session streaming pieces."""

from .base import SAMPLE_RATE, Segment, STTEngine, Transcript, Word
from .session import (
    SessionEvent,
    TranscriptionError,
    TranscriptionSession,
    UtteranceFinal,
    UtteranceLikely,
    UtterancePartial,
    UtteranceStarted,
    UtteranceStopped,
)
from .streaming import PartialTranscript, StreamingTranscriber

__all__ = [
    "SAMPLE_RATE",
    "PartialTranscript",
    "STTEngine",
    "Segment",
    "SessionEvent",
    "StreamingTranscriber",
    "Transcript",
    "TranscriptionError",
    "TranscriptionSession",
    "UtteranceFinal",
    "UtteranceLikely",
    "UtterancePartial",
    "UtteranceStarted",
    "UtteranceStopped",
    "Word",
]
