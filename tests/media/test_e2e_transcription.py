"""STT endpoints against a real server: the openai SDK (every response format, streaming), every
upload format, the PRD's /v1/audio/stt, and bad uploads answered with clear 4xx errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from .conftest import UPLOAD_SPECS, Clip, SpeechServer, encode_upload
from .helpers import wer


def test_sdk_json_text_verbose_srt_vtt(client: openai.OpenAI, clips: list[Clip]) -> None:
    clip = clips[0]
    with clip.path.open("rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert wer(clip.text, result.text) < 0.15
    assert result.usage is not None and result.usage.type == "duration" and result.usage.seconds == 3

    text = client.audio.transcriptions.create(model="whisper-1", file=clip.path, response_format="text")
    assert isinstance(text, str) and wer(clip.text, text) < 0.15

    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=clip.path, response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
    assert verbose.language == "english" and verbose.duration == pytest.approx(len(clip.samples) / clip.rate, abs=0.1)
    assert verbose.segments and verbose.segments[0].start == 0.0 and verbose.segments[-1].end <= verbose.duration + 0.1
    assert verbose.words and len(verbose.words) >= 8
    assert all(w.end >= w.start for w in verbose.words)

    srt = client.audio.transcriptions.create(model="whisper-1", file=clip.path, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and "quick brown fox" in srt.lower()
    vtt = client.audio.transcriptions.create(model="whisper-1", file=clip.path, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:0") and "lazy dog" in vtt.lower()


def test_sdk_stream(client: openai.OpenAI, clips: list[Clip]) -> None:
    clip = clips[1]
    events = list(client.audio.transcriptions.create(model="gpt-4o-transcribe", file=clip.path, stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.done") == 1
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert deltas and "".join(deltas).strip() == events[-1].text
    assert wer(clip.text, events[-1].text) < 0.15


@pytest.mark.parametrize("family", sorted(UPLOAD_SPECS))
def test_every_upload_format(
    client: openai.OpenAI, upload_files: dict[str, Path], clips: list[Clip], family: str
) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=upload_files[family])
    assert wer(clips[0].text, result.text) < 0.15, (family, result.text)


def test_prd_stt_multipart_and_raw(speech_server: SpeechServer, clips: list[Clip]) -> None:
    clip = clips[2]
    with httpx.Client(base_url=speech_server.base_url, timeout=60) as http:
        r = http.post(
            "/audio/stt", files={"file": ("a.wav", clip.path.read_bytes(), "audio/wav")}, data={"language": "en"}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"text", "language", "duration", "confidence"}
        assert wer(clip.text, body["text"]) < 0.15 and body["language"] == "en"
        assert 0.0 < body["confidence"] <= 1.0 and body["duration"] > 1.0
        mp3 = encode_upload(clip.samples, clip.rate, "mp3", "libmp3lame")
        raw = http.post("/audio/stt", content=mp3, headers={"content-type": "audio/mpeg"})
        assert raw.status_code == 200 and wer(clip.text, raw.json()["text"]) < 0.15


def _error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["request_id"], err
    return err


def test_bad_uploads(speech_server: SpeechServer, clips: list[Clip]) -> None:
    mp3 = encode_upload(clips[0].samples, clips[0].rate, "mp3", "libmp3lame")
    cases = {
        "empty": (b"", "VALIDATION_AUDIO_FORMAT"),
        "wrong type": (b"This is a text file, not audio.\n" * 20, "VALIDATION_AUDIO_FORMAT"),
        "truncated mp3": (mp3[:300], "VALIDATION_AUDIO_FORMAT"),
    }
    with httpx.Client(base_url=speech_server.base_url, timeout=60) as http:
        for name, (data, code) in cases.items():
            r = http.post("/audio/transcriptions", files={"file": (f"{name}.mp3", data)}, data={"model": "whisper-1"})
            assert _error(r, 400, code)["param"] == "file", name
        big = b"\0" * (25 * 1024 * 1024 + 1)
        r = http.post("/audio/transcriptions", files={"file": ("big.wav", big)}, data={"model": "whisper-1"})
        _error(r, 413, "VALIDATION_FILE_TOO_LARGE")
        _error(http.post("/audio/transcriptions", data={"model": "whisper-1"}), 400, "VALIDATION_ERROR")
        _error(
            http.post(
                "/audio/transcriptions",
                files={"file": ("a.wav", clips[0].path.read_bytes())},
                data={"model": "whisper-1", "response_format": "diarized_json"},
            ),
            400,
            "VALIDATION_ERROR",
        )
        _error(
            http.post("/audio/stt", content=b"garbage" * 100, headers={"content-type": "audio/wav"}),
            400,
            "VALIDATION_AUDIO_FORMAT",
        )


def test_sdk_raises_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.audio.transcriptions.create(model="whisper-1", file=("notes.txt", b"hello, not audio"))
    assert exc.value.code == "VALIDATION_AUDIO_FORMAT"
