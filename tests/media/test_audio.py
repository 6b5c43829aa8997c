"""Audio primitives: frames, G.711, resampling, encoding every output format, decoding uploads."""

from __future__ import annotations

import numpy as np
import pytest

from cozy_media.audio import (
    FORMATS,
    AudioFormatError,
    PcmAudio,
    Resampler,
    StreamEncoder,
    decode_audio,
    encode_audio,
    normalize_formats,
    output_format,
    resample,
)
from cozy_media.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

from .conftest import UPLOAD_SPECS, Clip, encode_upload


def tone(seconds: float = 1.0, rate: int = 24000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)


def test_pcm_audio_bytes_roundtrip() -> None:
    x = tone(0.1, 16000)
    audio = PcmAudio.from_bytes(x.tobytes() + b"\x01", 16000)  # odd trailing byte dropped
    assert np.array_equal(audio.samples, x)
    assert audio.to_bytes() == x.tobytes()
    assert audio.duration_ms == pytest.approx(100.0)
    assert audio.to_float32().dtype == np.float32
    assert abs(audio.to_float32()).max() <= 1.0


@pytest.mark.parametrize(("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_g711_roundtrip_is_close(encode, decode) -> None:  # type: ignore[no-untyped-def]
    x = tone(0.5, 8000)
    data = encode(x)
    assert len(data) == len(x)  # one byte per sample
    y = decode(data)
    assert y.dtype == np.int16
    assert np.abs(y.astype(int) - x).max() < 600  # logarithmic quantization error at this level


def test_stream_resampler_matches_length_and_frequency() -> None:
    x = tone(1.0, 48000, 1000)
    r = Resampler(48000, 16000)
    parts = [r.process(x[i : i + 960]) for i in range(0, len(x), 960)] + [r.flush()]
    y = np.concatenate(parts)
    assert abs(len(y) - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(y.astype(np.float32)))
    assert abs(np.argmax(spectrum) * 16000 / len(y) - 1000) < 5
    assert len(resample(x, 48000, 16000)) == 16000
    assert resample(x, 16000, 16000) is x


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_output_format_encodes_streaming(fmt: str) -> None:
    x = tone(1.0)
    enc = StreamEncoder(fmt, 24000)
    data = b"".join([enc.encode(x[i : i + 6000]) for i in range(0, len(x), 6000)]) + enc.finish()
    spec = output_format(fmt)
    assert spec is not None
    if fmt == "pcm":
        assert data == x.tobytes()
    elif fmt in ("ulaw", "alaw"):
        assert abs(len(data) - 8000) <= 16  # 8 kHz, one byte per sample
    else:
        audio, _ = decode_audio(data, sample_rate=16000)
        assert audio.duration_s == pytest.approx(1.0, abs=0.12)


def test_whole_wav_has_exact_sizes() -> None:
    x = tone(0.5)
    data = encode_audio(x, 24000, "wav")
    assert data[:4] == b"RIFF" and int.from_bytes(data[40:44], "little") == len(x) * 2
    assert len(data) == 44 + len(x) * 2


def test_decode_errors_are_audio_format_errors(clips: list[Clip]) -> None:
    mp3 = encode_upload(clips[0].samples, clips[0].rate, "mp3", "libmp3lame")
    for bad in (b"", b"just some text, not audio at all" * 10, mp3[:300]):
        with pytest.raises(AudioFormatError) as exc:
            decode_audio(bad)
        assert exc.value.code == "VALIDATION_AUDIO_FORMAT" and exc.value.status == 400
    audio, family = decode_audio(mp3[: len(mp3) // 2])  # a file cut in half still decodes its first half
    assert family == "mp3" and 0.5 < audio.duration_s < clips[0].samples.size / clips[0].rate


def test_decode_every_upload_format(clips: list[Clip]) -> None:
    clip = clips[0]
    expected = len(clip.samples) / clip.rate
    for family, (container, codec) in UPLOAD_SPECS.items():
        audio, found = decode_audio(encode_upload(clip.samples, clip.rate, container, codec), sample_rate=16000)
        assert audio.sample_rate == 16000
        assert audio.duration_s == pytest.approx(expected, abs=0.1), family
        assert found == family


def test_allowed_formats_and_duration_limit(clips: list[Clip]) -> None:
    clip = clips[0]
    flac = encode_upload(clip.samples, clip.rate, "flac", "flac")
    with pytest.raises(AudioFormatError, match="unsupported audio format 'flac'"):
        decode_audio(flac, allowed=normalize_formats(["wav", "mp3"]))
    assert normalize_formats(["mp4", "opus", "mpga"]) == {"m4a", "ogg", "mp3"}
    with pytest.raises(AudioFormatError, match="longer than"):
        decode_audio(clip.path.read_bytes(), max_duration_s=0.5)
