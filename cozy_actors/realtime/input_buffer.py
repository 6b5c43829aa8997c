"""The uncommitted input audio of a Realtime session (`input_audio_buffer`), bounded.

Why frames in a deque and not one bytearray: the microphone never stops, so the buffer reaches its
cap in every long call, and trimming the front of a 60 s bytearray moves ~3 MB per 20 ms frame.
Dropping whole frames from the left costs nothing. With server VAD the buffer is also cut to the
current utterance when speech starts, so a committed item holds the words, not the silence before.
"""

from __future__ import annotations

from collections import deque


class InputBuffer:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._frames: deque[bytes] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes) -> None:
        """Add a frame; the oldest frames go once the buffer holds more than `max_bytes`."""
        self._frames.append(data)
        self._size += len(data)
        while self._size > self.max_bytes and len(self._frames) > 1:
            self._size -= len(self._frames.popleft())

    def keep_last(self, nbytes: int) -> None:
        """Forget everything but the newest `nbytes` (rounded to whole frames, never fewer bytes)."""
        while self._frames and self._size - len(self._frames[0]) >= nbytes:
            self._size -= len(self._frames.popleft())

    def take(self) -> bytes:
        """Everything buffered (the committed audio); the buffer is empty afterwards."""
        data = b"".join(self._frames)
        self.clear()
        return data

    def clear(self) -> None:
        self._frames.clear()
        self._size = 0
