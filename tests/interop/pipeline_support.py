"""What the interop clients stream through the example speech pipeline."""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from types import ModuleType

from actorstage.pipelines import read_wav
from tests.interop.conftest import ROOT

EXAMPLE = ROOT / "examples" / "pipeline_audio"


@cache
def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("speech_report", EXAMPLE / "speech_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def speech_manifest(directory: Path) -> Path:
    """The example's manifest, its chunker told the rate of the bare PCM it will get."""
    document = json.loads((EXAMPLE / "manifest.json").read_text())
    document["nodes"][0]["params"]["sample_rate"] = _example().RATE
    path = directory / "speech.json"
    path.write_text(json.dumps(document))
    return path


def recording_pieces(directory: Path, piece_seconds: float = 0.25) -> list[bytes]:
    """The example's test recording as bare 16-bit mono PCM, in pieces."""
    path = directory / "speech.wav"
    _example().make_recording(path)
    audio = read_wav(path)
    step = int(audio.sample_rate * piece_seconds) * 2
    pcm = bytes(audio.pcm)
    return [pcm[index:index + step] for index in range(0, len(pcm), step)]


def check_segments(segments: list[dict[str, float]]) -> None:
    """The two segments the example finds, where its recording's bursts are."""
    bursts = _example().BURSTS
    assert len(segments) == len(bursts), segments
    for segment, (start, end) in zip(segments, bursts, strict=True):
        assert abs(segment["start"] - start) <= 0.03 and abs(segment["end"] - end) <= 0.03, \
            segments
