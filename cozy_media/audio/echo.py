"""Acoustic echo cancellation of a session's input, with the reply audio the server sent as reference.

Why: a caller on a speakerphone feeds the bot's own voice back into the microphone; the VAD hears
it as speech and the bot interrupts itself. The server knows exactly what it sent and when, so it
can cancel that echo before the VAD and the STT see the input.

The canceller is WebRTC's AEC3, from the `livekit` wheel's `AudioProcessingModule` (Rust/C++,
torch-free, works offline: no model to download). It takes 10 ms frames of 16 kHz int16 audio.

Timing: the far end (the reply) is placed on the wall clock as a client plays it: a chunk sent at
time `s` plays at `max(s, end of the previous chunk)`. The near end (microphone) is a continuous
stream: its sample at position `p` (seconds received) was captured about `offset + p`, `offset`
being the smallest `arrival - p` of the last `WINDOW_S` (the chunk that waited least; a loaded
server or network only delays chunks, and a client that pauses sending moves the window on);
while a reply plays that offset is held unless it moves by over `REANCHOR_S` (`_near_clock`). Each
near frame is paired with the reference of the same wall-clock time, so the reference always leads
the echo it produced (by the network round trip plus the room); AEC3 finds that delay itself (up
to about half a second). Per-chunk arrival times alone would not do: chunks handled together
would get overlapping times and the reference would repeat, which AEC3 cannot model.

Barge-in gate: while reply audio plays, a 10 ms frame that the canceller cut by more than
`GATE_DB` (the near signal was the echo, nothing else) is muted entirely, so the residual echo
cannot start the VAD; real speech over the reply survives the canceller (a few dB lost) and
passes. A cleaned frame below `FLOOR_DBFS` is muted as well: AEC3 fills what it removed with
comfort noise (about -62 dBFS), and between muted frames that noise switches on and off at the
reply's syllable rate, a pattern that nudges Silero towards speech (on one recorded call: peak
speech probability 0.23 without the floor, 0.01 with it); speech is 20-40 dB above the floor.
Double-talk override: AEC3 starts out assuming an echo path, so a caller with no echo at all (a
headset) who talks over the reply before AEC3 has heard any echo is suppressed for a second or
two. A frame within `ERL_MIN_DB` of the loudest reference of the last half second is louder than
any echo of it can be, so when AEC3 cut such a frame by more than `GATE_DB`, the input passes as it
came (it is the caller's voice).

State is bounded (3 s of reference per session). `process` runs in the worker pool, `reference`
on the event loop (a resample of a 100 ms chunk and a copy, under a lock).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

from .resample import Resampler

RATE = 16000
FRAME = RATE // 100  # 10 ms
KEEP_S = 3.0  # reference kept (the lead of paced output plus the echo path, with room to spare)
IDLE_S = 1.0  # after this long without reply audio the canceller passes the input through
WINDOW_S = 2.0  # the near clock's offset: the minimum over this window
REANCHOR_S = 0.05  # while a reply plays, the near clock moves only when its offset moved this much
GATE_DB = 20.0  # a frame cut by more than this while the reply plays is echo: muted
FLOOR_DBFS = -50.0  # while the reply plays, a cleaned frame quieter than this is muted too
ERL_MIN_DB = 6.0  # an echo is at least this much quieter than the reference that made it
ECHO_SPAN = 50  # reference frames (500 ms) an echo may lag behind (after the coarse alignment)
ALIGN_N = 200  # near frames (2 s) the coarse alignment correlates
ALIGN_MAX = 150  # lags it tries: 0 to 1.5 s
ALIGN_EVERY = 50  # frames between two estimates (0.5 s)
ALIGN_BEYOND_S = 0.35  # lags up to this AEC3 finds itself: no shift
ALIGN_MARGIN_S = 0.04  # the reference is kept this much ahead of the echo after the shift


class EchoUnavailable(RuntimeError):
    """The livekit wheel (its audio processing module) is not installed."""


def _apm() -> Any:
    try:
        from livekit import rtc
    except ImportError as exc:  # pragma: no cover - the wheel is in requirements.lock
        raise EchoUnavailable("echo cancellation needs the livekit wheel (livekit.rtc)") from exc
    return rtc


def available() -> bool:
    try:
        _apm()
    except EchoUnavailable:
        return False
    return True


class EchoCanceller:
    """One session's AEC state: far-end reference in (`reference`), near-end 16 kHz in and out (`process`)."""

    def __init__(self, *, clock: Any = time.perf_counter) -> None:
        rtc = _apm()
        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True, high_pass_filter=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._ref = np.zeros(int(KEEP_S * RATE), dtype=np.int16)
        self._ref_t0: float | None = None  # wall time of self._ref[0]
        self._ref_len = 0
        self._ref_end = 0.0  # wall time the last reference sample finishes playing
        self._resamplers: dict[int, Resampler] = {}
        self._rest = np.zeros(0, dtype=np.int16)
        self._pos = 0.0  # near audio received so far (s)
        self._offsets: deque[tuple[float, float]] = deque()  # (arrival, arrival - pos): a sliding minimum
        self._anchor: float | None = None  # the offset the near clock runs on (see _near_clock)
        self._frame = np.zeros(FRAME, dtype=np.int16)
        self._gate = 10.0 ** (-GATE_DB / 10.0)
        self._floor = FRAME * (32768.0 * 10.0 ** (FLOOR_DBFS / 20.0)) ** 2  # a frame's energy at FLOOR_DBFS
        self._erl = 10.0 ** (-ERL_MIN_DB / 10.0)
        self._ref_energy = np.zeros(ECHO_SPAN)  # energies of the last ECHO_SPAN reference frames (a ring)
        self._ref_at = 0
        self.passed = 0  # frames let through by the double-talk override
        # Coarse alignment: AEC3 finds delays up to ~0.5 s; a longer path (a client's jitter buffer,
        # a loaded machine) is measured here by correlating loudness contours, and the reference
        # is looked up that much earlier, so AEC3 only has the rest to find.
        self._near_env = np.zeros(ALIGN_N)  # log energy of the last ALIGN_N near frames (a ring)
        self._near_at = 0
        self._near_last = 0.0  # wall time of the newest near frame
        self.shift_s = 0.0  # the reference is taken this much earlier than the near frame's time
        self._candidate = 0.0  # the last estimate (adopted when the next one agrees)
        self.frames = 0  # near frames run through AEC3
        self.gated = 0  # of them, muted by the barge-in gate
        self.energy_in = 0.0  # near energy (sum of squares) of the frames that ran through AEC3
        self.energy_out = 0.0
        self.cpu_s = 0.0  # thread CPU time spent in `process`

    # --- far end (event loop) -----------------------------------------------------------------
    def reference(self, samples: np.ndarray, rate: int, at: float | None = None) -> None:
        """Reply audio just handed to the client (int16 at `rate`), sent at `at` (now by default)."""
        if not len(samples):
            return
        if rate != RATE:
            resampler = self._resamplers.get(rate)
            if resampler is None:
                resampler = self._resamplers[rate] = Resampler(rate, RATE, quality="MQ")
            samples = resampler.process(samples)
        sent = self._clock() if at is None else at
        with self._lock:
            start = max(sent, self._ref_end)
            if self._ref_t0 is None or start - self._ref_end > 0.5:  # new reply (or a long gap): new window
                self._ref_t0, self._ref_len = start, 0
            pos = round((start - self._ref_t0) * RATE)
            end = pos + len(samples)
            if end > len(self._ref):  # keep the newest KEEP_S: shift the window
                drop = min(self._ref_len, end - len(self._ref))
                self._ref[: self._ref_len - drop] = self._ref[drop : self._ref_len]
                self._ref_len -= drop
                self._ref_t0 += drop / RATE
                pos -= drop
                end -= drop
            pos = max(0, pos)
            if pos > self._ref_len:
                self._ref[self._ref_len : pos] = 0
            take = samples[-(end - pos) :] if end - pos < len(samples) else samples
            self._ref[pos : pos + len(take)] = take
            self._ref_len = max(self._ref_len, pos + len(take))
            self._ref_end = self._ref_t0 + self._ref_len / RATE

    def _reference_at(self, t: float, out: np.ndarray) -> bool:
        """Fill `out` with the reference playing at wall time `t`; False when there is none."""
        with self._lock:
            if self._ref_t0 is None or t >= self._ref_end or t + FRAME / RATE <= self._ref_t0:
                return False
            pos = round((t - self._ref_t0) * RATE)
            lo, hi = max(0, pos), min(self._ref_len, pos + FRAME)
            out[:] = 0
            out[lo - pos : hi - pos] = self._ref[lo:hi]
            return True

    def playing(self, now: float | None = None) -> bool:
        """Reply audio is (by the playout model) playing now, or stopped under IDLE_S ago."""
        now = self._clock() if now is None else now
        return self._ref_t0 is not None and now < self._ref_end + IDLE_S

    def stop_reference(self) -> None:
        """The reply was cut (barge-in, cancel): what was not played yet never reaches the speaker."""
        with self._lock:
            now = self._clock()
            if self._ref_t0 is not None and now <= self._ref_t0:
                self._ref_t0, self._ref_len, self._ref_end = None, 0, now
            elif self._ref_t0 is not None and now < self._ref_end:
                self._ref_len = min(self._ref_len, int((now - self._ref_t0) * RATE))
                self._ref_end = self._ref_t0 + self._ref_len / RATE

    # --- near end (worker pool) ---------------------------------------------------------------
    def process(self, samples: np.ndarray, arrived: float | None = None) -> np.ndarray:
        """Cancel the echo in a 16 kHz int16 chunk that arrived at `arrived`. Output lags input by
        under 10 ms (whole frames only; the rest waits). Not thread-safe: one stream, in order."""
        cpu = time.thread_time()
        arrived = self._clock() if arrived is None else arrived
        data = np.concatenate([self._rest, samples.astype(np.int16, copy=False)]) if len(self._rest) else samples
        whole = len(data) - len(data) % FRAME
        out = np.array(data[:whole], dtype=np.int16)
        self._rest = np.array(data[whole:], dtype=np.int16)
        playing = self.playing(arrived)
        end = self._near_clock(arrived, len(samples), playing)  # when the last sample of `data` was captured
        if not playing:
            return out
        total = len(data)
        rtc, apm, ref = self._rtc, self._apm, self._frame
        for at in range(0, whole, FRAME):
            t = end - (total - at) / RATE  # this frame's first sample, on the wall clock
            if not self._reference_at(t - self.shift_s, ref):
                ref[:] = 0
            self._ref_energy[self._ref_at] = float(np.dot(ref, ref.astype(np.float64)))
            self._ref_at = (self._ref_at + 1) % ECHO_SPAN
            apm.process_reverse_stream(rtc.AudioFrame(ref.tobytes(), RATE, 1, FRAME))
            near = out[at : at + FRAME]
            frame = rtc.AudioFrame(near.tobytes(), RATE, 1, FRAME)
            apm.set_stream_delay_ms(0)  # required with AEC on; AEC3 finds the delay itself
            apm.process_stream(frame)
            cleaned = np.frombuffer(frame.data, dtype=np.int16)
            e_in = float(np.dot(near, near.astype(np.float64)))
            e_out = float(np.dot(cleaned, cleaned.astype(np.float64)))
            self.frames += 1
            self._near_env[self._near_at] = np.log10(e_in + 1.0)
            self._near_at = (self._near_at + 1) % ALIGN_N
            self._near_last = t
            if self.frames % ALIGN_EVERY == 0 and self.frames >= ALIGN_N:
                self._align()
            self.energy_in += e_in
            self.energy_out += e_out
            if e_out >= e_in * self._gate:
                if e_out < self._floor:
                    near[:] = 0  # below the floor: silence, like the gated frames around it
                else:
                    near[:] = cleaned
            elif e_in > self._ref_energy.max() * self._erl:
                self.passed += 1  # louder than any echo: the caller talks (AEC3 has not learnt the room yet)
            else:
                near[:] = 0  # the barge-in gate: this frame was echo only
                self.gated += 1
        self.cpu_s += time.thread_time() - cpu
        return out

    def _align(self) -> None:
        """Estimate the echo's lag behind the reference (10 ms steps) from the last 2 s of loudness
        contours; adopt it when the correlation is clear and it moved by more than 30 ms."""
        near = np.roll(self._near_env, -self._near_at)  # oldest first
        if near.std() < 0.1:
            return  # silence: nothing to align on
        span = ALIGN_N + ALIGN_MAX
        with self._lock:
            if self._ref_t0 is None:
                return
            first = self._near_last - (span - 1) / 100.0  # the reference frame `ALIGN_MAX` before the oldest near
            pos = round((first - self._ref_t0) * RATE)
            lo, hi = max(0, pos), min(self._ref_len, pos + span * FRAME)
            if hi <= lo:
                return
            ref = np.zeros(span * FRAME, dtype=np.float64)
            ref[lo - pos : hi - pos] = self._ref[lo:hi]
        env = np.log10(np.einsum("ij,ij->i", r := ref.reshape(span, FRAME), r) + 1.0)
        windows = np.lib.stride_tricks.sliding_window_view(env, ALIGN_N)[::-1]  # lag 0, 1, ... ALIGN_MAX
        w = windows - windows.mean(axis=1, keepdims=True)
        n = near - near.mean()
        corr = (w @ n) / (np.sqrt(np.einsum("ij,ij->i", w, w) * float(n @ n)) + 1e-9)
        lag = int(np.argmax(corr))
        near_best = float(corr[: int(ALIGN_BEYOND_S * 100) + 1].max())
        if corr[lag] < 0.6 or (lag / 100.0 > ALIGN_BEYOND_S and corr[lag] < near_best + 0.15):
            return  # unclear, or a speech rhythm's echo of a peak that AEC3 can reach itself
        # Within AEC3's own reach no shift is needed (each change makes it re-converge); a longer
        # lag is adopted once two estimates in a row agree.
        shift = max(0.0, lag / 100.0 - ALIGN_MARGIN_S) if lag / 100.0 > ALIGN_BEYOND_S else 0.0
        agreed = abs(shift - self._candidate) <= 0.03
        self._candidate = shift
        if agreed and abs(shift - self.shift_s) > 0.03:
            self.shift_s = shift

    def _near_clock(self, arrived: float, n: int, playing: bool) -> float:
        """The capture time of the newest near sample: the stream's position on an anchored offset.

        The estimate is the least-delayed `arrival - position` of the last WINDOW_S (a monotonic
        deque: O(1) a chunk). It wanders by a millisecond or two as the fastest chunk leaves the
        window, and each such step moves every later near frame against the reference: to AEC3
        that is a new echo path (a 1 ms step at 16 kHz misplaces every tap of its filter), and
        for the ~200 ms it takes to re-converge the echo leaks through and can start the VAD. So
        while a reply plays the clock keeps its anchor and follows the estimate only when it
        moved by more than REANCHOR_S (the client paused or its path changed: AEC3 has to find
        the delay again anyway); between replies it follows freely."""
        self._pos += n / RATE
        offset = arrived - self._pos
        q = self._offsets
        while q and q[-1][1] >= offset:
            q.pop()
        q.append((arrived, offset))
        while q[0][0] < arrived - WINDOW_S:
            q.popleft()
        estimate = q[0][1]
        if self._anchor is None or not playing or abs(estimate - self._anchor) > REANCHOR_S:
            self._anchor = estimate
        return self._anchor + self._pos

    def erle_db(self) -> float:
        """Echo return loss enhancement over the frames processed so far (input vs output energy)."""
        return 10.0 * np.log10((self.energy_in + 1e-9) / (self.energy_out + 1e-9))
