"""Audio primitives: PCM16 frames, decoding uploads, resampling, encoding, G.711."""

from .decode import UPLOAD_FORMATS, decode_audio, normalize_formats
from .encode import FORMATS, OutputFormat, StreamEncoder, encode_audio, output_format
from .frames import AudioFormatError, PcmAudio, float32_to_int16, int16_to_float32
from .resample import Resampler, resample

__all__ = [
    "FORMATS",
    "UPLOAD_FORMATS",
    "AudioFormatError",
    "OutputFormat",
    "PcmAudio",
    "Resampler",
    "StreamEncoder",
    "decode_audio",
    "encode_audio",
    "float32_to_int16",
    "int16_to_float32",
    "normalize_formats",
    "output_format",
    "resample",
]
