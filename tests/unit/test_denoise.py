"""RNNoise input suppression (cozy_media/audio/denoise.py) and its session field."""

from __future__ import annotations

import numpy as np
import pytest

from cozy_actors.realtime.config import SessionConfig
from cozy_actors.realtime.items import RealtimeError
from cozy_media.audio import denoise


def test_white_noise_is_suppressed_and_any_chunk_size_is_taken() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(denoise.RATE) * 3000).astype(np.int16)
    d = denoise.Denoiser()
    out = np.concatenate([d.process(noise[at : at + 1234]) for at in range(0, len(noise), 1234)])
    assert len(noise) - denoise.FRAME < len(out) <= len(noise)  # whole frames out, the rest held
    tail = out[denoise.RATE // 2 :].astype(np.float64)  # after the model has adapted
    assert np.sqrt((tail**2).mean()) < 3000 / 10  # at least 20 dB less noise
    d.close()


def test_noise_reduction_field_takes_the_ga_types_and_is_refused_without_the_wheel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = SessionConfig().merged({"audio": {"input": {"noise_reduction": {"type": "far_field"}}}})
    assert cfg.audio.input.noise_reduction is not None and cfg.audio.input.noise_reduction.type == "far_field"
    with pytest.raises(RealtimeError) as bad:
        SessionConfig().merged({"audio": {"input": {"noise_reduction": {"type": "loud"}}}})
    assert bad.value.param == "session.audio.input.noise_reduction.type"
    monkeypatch.setattr(denoise, "available", lambda: False)
    with pytest.raises(RealtimeError) as missing:
        SessionConfig().merged({"audio": {"input": {"noise_reduction": {"type": "near_field"}}}})
    assert missing.value.param == "session.audio.input.noise_reduction" and "pyrnnoise" in missing.value.message
