"""Audio items: 16-bit little-endian PCM, as it comes out of a WAV file.

No ``from __future__ import annotations`` here: these Structs are
re-exported from ``actorstage.pipelines`` under that module name, which is
also the name a node process finds them by.
"""

import wave
from pathlib import Path

from actorstage.actors._message import Message

__all__ = ["Audio", "AudioChunk", "SpeechSegment", "read_wav", "write_wav"]


class Audio(Message, frozen=True):
    """A piece of an audio stream: 16-bit signed little-endian PCM, interleaved channels.

    Consecutive ``Audio`` items given to an ``AudioChunkerNode`` are one stream.
    """

    pcm: bytes
    sample_rate: int
    channels: int = 1


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
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(audio.channels)
        writer.setsampwidth(2)
        writer.setframerate(audio.sample_rate)
        writer.writeframes(audio.pcm)
