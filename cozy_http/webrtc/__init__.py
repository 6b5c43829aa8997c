"""FastRTC/WebRTC voice calls and the /ui call page, on the Realtime conversation actor."""

from .gateway import WebRTCGateway

__all__ = ["WebRTCGateway"]
