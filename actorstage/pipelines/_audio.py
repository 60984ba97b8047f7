"""Audio items: interleaved little-endian samples (16-bit PCM, as a WAV file holds them,
or 32-bit float or integer samples, as RemoteMedia's clients send them).

No ``from __future__ import annotations`` here: these Structs are
re-exported from ``actorstage.pipelines`` under that module name, which is
also the name a node process finds them by.
"""

import sys
import wave
from array import array
from pathlib import Path
from typing import Any, Literal

from actorstage.actors._message import Message

__all__ = ["Audio", "AudioChunk", "SampleFormat", "SpeechSegment", "read_wav", "write_wav"]

SampleFormat = Literal["i16", "f32", "i32"]
_CODES = {"i16": "h", "f32": "f", "i32": "i"}
_FULL_SCALE = {"i16": 32768.0, "i32": 2147483648.0, "f32": 1.0}


def _array(data: Any, format: str) -> "array[Any]":
    values = array(_CODES[format])
    values.frombytes(data)
    if sys.byteorder == "big":  # pragma: no cover - tested on little-endian machines
        values.byteswap()
    return values


class Audio(Message, frozen=True):
    """A piece of an audio stream: interleaved little-endian samples in ``format``
    (``"i16"``: 16-bit signed PCM, the default; ``"f32"``: floats in [-1, 1];
    ``"i32"``: 32-bit signed). ``metadata`` travels with it (RemoteMedia's
    ``DataBuffer.metadata``).

    Consecutive ``Audio`` items given to an ``AudioChunkerNode`` are one stream.
    """

    pcm: bytes
    sample_rate: int
    channels: int = 1
    format: SampleFormat = "i16"
    metadata: dict[str, str] = {}

    @property
    def frames(self) -> int:
        """Samples per channel."""
        width = 2 if self.format == "i16" else 4
        return len(self.pcm) // width // max(self.channels, 1)

    def samples(self) -> "array[Any]":
        """The samples as an ``array`` of the format's type (interleaved)."""
        return _array(self.pcm, self.format)

    @classmethod
    def of_samples(cls, samples: Any, sample_rate: int, channels: int = 1,
                   format: SampleFormat = "f32", metadata: dict[str, str] | None = None
                   ) -> "Audio":
        """The ``Audio`` of interleaved samples (an ``array`` or any iterable of numbers)
        in ``format``: stored little-endian."""
        values = array(_CODES[format], samples)
        if sys.byteorder == "big":  # pragma: no cover
            values.byteswap()
        return cls(values.tobytes(), sample_rate, channels, format, metadata or {})

    def as_format(self, format: SampleFormat) -> "Audio":
        """The same audio in ``format`` (integers scaled, floats clipped to [-1, 1])."""
        if format == self.format:
            return self
        if format not in _CODES:
            raise ValueError(f"an audio format is one of {sorted(_CODES)}, got {format!r}")
        scale = _FULL_SCALE[format] / _FULL_SCALE[self.format]
        top = _FULL_SCALE[format] - (0.0 if format == "f32" else 1.0)
        bottom = -_FULL_SCALE[format]
        values = [min(max(value * scale, bottom), top) for value in self.samples()]
        return Audio.of_samples(values if format == "f32" else map(round, values),
                                self.sample_rate, self.channels, format, self.metadata)


class AudioChunk(Message, frozen=True):
    """A fixed-length slice of a mono stream; ``start`` in seconds from the stream's start."""

    pcm: bytes
    sample_rate: int
    index: int
    start: float

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


class SpeechSegment(Message, frozen=True):
    """A stretch of speech found by ``VadNode``: seconds from the stream's start."""

    start: float
    end: float
    peak_db: float
    chunks: int


def read_wav(path: str | Path) -> Audio:
    """The samples of a 16-bit PCM WAV file as one ``Audio`` item."""
    with wave.open(str(path), "rb") as reader:
        if reader.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files are read, this one has "
                             f"{8 * reader.getsampwidth()}-bit samples")
        return Audio(reader.readframes(reader.getnframes()), reader.getframerate(),
                      reader.getnchannels())


def write_wav(path: str | Path, audio: Audio) -> None:
    """Write ``audio`` as a 16-bit PCM WAV file."""
    audio = audio.as_format("i16")
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(audio.channels)
        writer.setsampwidth(2)
        writer.setframerate(audio.sample_rate)
        writer.writeframes(audio.pcm)
