"""Voice activity detection: Silero on onnxruntime, one cheap streaming detector per session."""

from .silero import SileroModel, SileroVAD, VADEngine, load_silero
from .stream import SpeechPaused, SpeechResumed, SpeechStarted, SpeechStopped, StreamingVAD, VadEvent, VadParams

__all__ = [
    "SileroModel",
    "SileroVAD",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "SpeechStopped",
    "StreamingVAD",
    "VADEngine",
    "VadEvent",
    "VadParams",
    "load_silero",
]
