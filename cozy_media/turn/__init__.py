"""End-of-turn detection beyond silence: Smart Turn v3.2 (semantic_vad), on onnxruntime alone."""

from .semantic import EAGERNESS_MAX_MS, SemanticVAD
from .smart_turn import SmartTurnModel, load_smart_turn, smart_turn, turn_probability

__all__ = ["EAGERNESS_MAX_MS", "SemanticVAD", "SmartTurnModel", "load_smart_turn", "smart_turn", "turn_probability"]
