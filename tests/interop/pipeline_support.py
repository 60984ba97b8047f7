"""What the interop clients stream through the example speech pipeline."""

from __future__ import annotations

import json
from pathlib import Path

from actorstage.pipelines import read_wav
from tests.pipelines.helpers import EXAMPLE, speech_example


def speech_manifest(directory: Path) -> Path:
    """The example's manifest, its chunker told the rate of the bare PCM it will get."""
    document = json.loads((EXAMPLE / "manifest.json").read_text())
    document["nodes"][0]["params"]["sample_rate"] = speech_example().RATE
    path = directory / "speech.json"
    path.write_text(json.dumps(document))
    return path


def recording_pieces(directory: Path, piece_seconds: float = 0.25) -> list[bytes]:
    """The example's test recording as bare 16-bit mono PCM, in pieces."""
    path = directory / "speech.wav"
    speech_example().make_recording(path)
    audio = read_wav(path)
    step = int(audio.sample_rate * piece_seconds) * 2
    pcm = bytes(audio.pcm)
    return [pcm[index:index + step] for index in range(0, len(pcm), step)]


def check_segments(segments: list[dict[str, float]]) -> None:
    """The two segments the example finds, where its recording's bursts are."""
    bursts = speech_example().BURSTS
    assert len(segments) == len(bursts), segments
    for segment, (start, end) in zip(segments, bursts, strict=True):
        assert abs(segment["start"] - start) <= 0.03 and abs(segment["end"] - end) <= 0.03, \
            segments
