"""Media items (audio formats, video frames, tensors) and the node types under RemoteMedia's
names, in this process and in node processes."""

from __future__ import annotations

import math
from array import array
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from actorstage.pipelines import Audio, AudioChunkerNode, Tensor, VideoFrame
from actorstage.pipelines._media_nodes import (
    AudioLevelNode,
    AudioResampleNode,
    ChannelBalanceNode,
    ClippingDetectorNode,
    FastResampleNode,
    SilenceDetectorNode,
    VideoFlipNode,
)
from tests.pipelines import nodes as test_nodes
from tests.pipelines.helpers import node, pipeline
from tests.pipelines.test_builtin import make

pytestmark = pytest.mark.anyio

RGB = bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])  # red green / blue white


async def test_audio_converts_between_sample_formats_and_counts_frames() -> None:
    pcm = array("h", [0, 16384, -16384, 32767]).tobytes()
    audio = Audio(pcm, 16000, channels=2)
    floats = audio.as_format("f32")
    assert floats.format == "f32" and list(floats.samples()) == [0.0, 0.5, -0.5,
                                                                 32767 / 32768]
    assert floats.as_format("i16").pcm == pcm and floats.frames == audio.frames == 2
    wide = audio.as_format("i32")
    assert list(wide.samples()) == [0, 1 << 30, -(1 << 30), 32767 << 16]
    loud = Audio(array("f", [2.0, -3.0]).tobytes(), 8000, format="f32").as_format("i16")
    assert list(loud.samples()) == [32767, -32768]  # clipped at full scale
    with pytest.raises(ValueError, match="one of"):
        audio.as_format("u8")  # type: ignore[arg-type]


async def test_a_tensor_is_a_numpy_view_and_back() -> None:
    values = np.arange(6, dtype=np.int32).reshape(2, 3)
    tensor = Tensor.of(values, layout="HW")
    assert (tensor.shape, tensor.dtype, tensor.layout) == ((2, 3), "int32", "HW")
    assert np.array_equal(tensor.array(), values)
    transposed = Tensor(tensor.data, (3, 2), "int32", strides=(4, 12))
    assert np.array_equal(transposed.array(), values.T)


@pytest.mark.parametrize(("direction", "expected"), [
    ("vertical", [0, 0, 255, 255, 255, 255, 255, 0, 0, 0, 255, 0]),
    ("horizontal", [0, 255, 0, 255, 0, 0, 255, 255, 255, 0, 0, 255]),
    ("both", [255, 255, 255, 0, 0, 255, 0, 255, 0, 255, 0, 0]),
])
async def test_video_flip_flips_rgb24_frames_each_way(direction: str,
                                                      expected: list[int]) -> None:
    flip = await make(VideoFlipNode, direction=direction)
    out = await flip.process(VideoFrame(RGB, 2, 2, frame_number=3))
    assert list(out.pixels) == expected and out.frame_number == 3


async def test_video_flip_flips_each_plane_of_i420_and_refuses_a_wrong_size() -> None:
    luma = bytes(range(16))  # 4x4, then 2x2 U and 2x2 V
    frame = VideoFrame(luma + b"abcd" + b"wxyz", 4, 4, format="i420")
    out = await (await make(VideoFlipNode)).process(frame)
    assert out.pixels == bytes([12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3]) + \
        b"cdab" + b"yzwx"
    with pytest.raises(ValueError, match="holds 24 bytes, this one 23"):
        await (await make(VideoFlipNode)).process(msgspec.structs.replace(
            frame, pixels=frame.pixels[:-1]))
    with pytest.raises(TypeError, match="VideoFrame"):
        await (await make(VideoFlipNode)).process(b"raw")


async def test_media_items_cross_into_node_processes_and_large_ones_go_by_shared_memory(
) -> None:
    big = VideoFrame(bytes(range(256)) * 3 * 1024, 512, 512, metadata={"cam": "2"})
    audio = Audio(bytes(300_000), 48000, 2, "f32", {"lang": "en"})
    tensor = Tensor.of(np.ones((3, 4), dtype=np.float16))
    pipe = pipeline([node("a", "EchoNode", "process"), node("b", "PassThrough", "process"),
                     node("c", "PassthroughNode")], [("a", "b"), ("b", "c")])
    result = await pipe.run([big, audio, tensor, "text", b"bin", {"json": [1]}])
    assert [output.item for output in result.outputs] == [big, audio, tensor, "text",
                                                          b"bin", {"json": [1]}]
    assert all(stats.items_in == 6 for stats in result.nodes.values())


def sine(frames: int, rate: int, amplitude: float = 1.0, freq: float = 440.0,
         channels: int = 1, start: int = 0) -> Audio:
    values = array("f", (amplitude * math.sin(2 * math.pi * freq * (start + i) / rate)
                         for i in range(frames) for _ in range(channels)))
    return Audio(values.tobytes(), rate, channels, "f32")


def silence(frames: int, rate: int = 16000, channels: int = 1) -> Audio:
    return Audio(bytes(2 * frames * channels), rate, channels)


async def test_audio_level_reports_rms_peak_and_health_as_remotemedias_node() -> None:
    level = await make(AudioLevelNode)
    loud = await level.process(sine(1600, 16000))
    assert loud["_schema"] == "audio_level_event"
    assert loud["rms_db"] == pytest.approx(-3.01, abs=0.02)
    assert loud["peak_db"] == pytest.approx(0.0, abs=0.01)
    assert (loud["is_silence"], loud["is_low_volume"], loud["health"]) == (False, False, 1.0)
    quiet = await level.process(sine(1600, 16000, amplitude=0.05))
    assert quiet["rms_db"] == pytest.approx(-29.03, abs=0.05) and quiet["is_low_volume"]
    assert quiet["health"] == pytest.approx((-29.03 + 60) / 40, abs=0.01)
    still = await level.process(silence(1600))
    assert (still["rms_db"], still["is_silence"], still["health"]) == (-120.0, True, 0.0)
    tagged = Audio(bytes(4), 16000, metadata={"stream_id": "mic", "timestamp_us": "42"})
    event = await level.process(tagged)
    assert (event["stream_id"], event["timestamp_us"]) == ("mic", 42)
    assert await level.process("not audio") == "not audio"  # passed on


async def test_silence_detector_follows_silence_and_dropouts_over_the_stream() -> None:
    detector = await make(SilenceDetectorNode, dropout_count_threshold=2)
    events = [await detector.process(item) for item in [
        sine(1600, 16000, 0.5), silence(3200), silence(6400), sine(1600, 16000, 0.5),
        silence(1600), sine(1600, 16000, 0.5)]]
    assert [e["is_silent"] for e in events] == [False, True, True, False, True, False]
    assert [round(e["silence_duration_ms"]) for e in events] == [0, 200, 600, 0, 100, 0]
    assert [e["is_sustained_silence"] for e in events] == [False, False, True, False,
                                                           False, False]
    assert [e["dropout_count"] for e in events] == [0, 1, 1, 1, 2, 2]
    assert events[4]["has_intermittent_dropouts"] and events[1]["health"] == pytest.approx(0.6)


async def test_clipping_detector_measures_saturation_and_crest_factor() -> None:
    clipping = await make(ClippingDetectorNode)
    square = Audio(array("f", [1.0, -1.0] * 400).tobytes(), 16000, format="f32")
    event = await clipping.process(square)
    assert event["saturation_ratio"] == 100.0 and event["crest_factor_db"] == 0.0
    assert event["is_clipping"] and event["health"] == 0.0
    clean = await clipping.process(sine(1600, 16000, 0.5))
    assert clean["saturation_ratio"] == 0.0 and not clean["is_clipping"]
    assert clean["crest_factor_db"] == pytest.approx(3.01, abs=0.02)
    assert (await clipping.process(silence(160)))["crest_factor_db"] == 20.0


async def test_channel_balance_finds_a_dead_channel_and_takes_mono_as_balanced() -> None:
    balance = await make(ChannelBalanceNode)
    left_only = array("f", [v for i in range(800) for v in (0.5 * math.sin(i / 5), 0.0)])
    event = await balance.process(Audio(left_only.tobytes(), 16000, 2, "f32"))
    assert (event["dead_channel"], event["has_dead_channel"], event["health"]) == (
        "right", True, 0.0)
    assert event["balance_ratio"] is None and event["right_rms_db"] == -120.0
    even = await balance.process(sine(800, 16000, 0.5, channels=2))
    assert even["imbalance_db"] == pytest.approx(0.0) and even["health"] == 1.0
    mono = await balance.process(sine(800, 16000))
    assert (mono["balance_ratio"], mono["dead_channel"], mono["health"]) == (1.0, "none", 1.0)


async def test_fast_resample_is_continuous_across_items_and_checks_its_rates() -> None:
    whole = await (await make(FastResampleNode, sourceRate=48000, targetRate=16000)).process(
        sine(4800, 48000, 0.8, channels=2))
    node = await make(FastResampleNode, source_rate=48000, target_rate=16000,
                      quality="High")
    parts = [await node.process(sine(frames, 48000, 0.8, channels=2, start=start))
             for start, frames in ((0, 1000), (1000, 1333), (2333, 2467))]
    joined = array("f")
    for part in parts:
        assert (part.sample_rate, part.channels, part.format) == (16000, 2, "f32")
        joined.extend(part.samples())
    assert whole.frames == 1600 and len(joined) == len(whole.samples())
    assert max(abs(a - b) for a, b in zip(joined, whole.samples(), strict=True)) < 1e-5
    expected = sine(1600, 16000, 0.8, channels=2).samples()
    assert max(abs(a - b) for a, b in zip(whole.samples(), expected, strict=True)) < 0.01
    assert await (await make(AudioResampleNode, target_rate="auto")).process(
        silence(10)) == silence(10).as_format("f32")
    with pytest.raises(ValueError, match="source_rate is 44100 but the audio comes at "
                                         "48000 Hz"):
        await (await make(FastResampleNode, source_rate=44100)).process(sine(10, 48000))


async def test_the_chunker_cuts_audio_into_chunk_size_samples_as_remotemedias() -> None:
    chunker = await make(AudioChunkerNode, chunkSize=256)
    chunks = []
    for item in (sine(300, 16000), sine(300, 16000).as_format("i16"), sine(400, 16000)):
        chunks += [chunk async for chunk in await chunker.process(item)]
    tail = await chunker.flush()
    assert [chunk.frames for chunk in chunks] == [256, 256, 256] and tail.frames == 232
    assert all(chunk.format == "f32" and chunk.sample_rate == 16000 for chunk in chunks)
    with pytest.raises(msgspec.ValidationError, match="given twice"):
        await make(AudioChunkerNode, chunkSize=256, chunk_size=128)


@pytest.mark.parametrize("executor", ["native", "process"])
async def test_a_node_in_remotemedias_python_shape_runs_unchanged(executor: str,
                                                                 tmp_path: Path) -> None:
    assert "RemoteMediaStyleNode" in dir(test_nodes)  # (its module registers it)
    log = tmp_path / "log"
    pipe = pipeline([node("rm", "test.RemoteMediaStyle", executor, repeat=2, log=str(log))])
    result = await pipe.run(["a", Audio(b"\x01\x00", 8000)])
    assert [output.item for output in result.outputs] == [
        {"node": "rm", "got": "a"}, {"node": "rm", "got": "a"},
        {"node": "rm", "got": Audio(b"\x01\x00", 8000)},
        {"node": "rm", "got": Audio(b"\x01\x00", 8000)}]
    assert log.read_text() == ("initialized rm test.RemoteMediaStyle default_rm\n"
                               "cleaned up\n")


async def test_register_remotemedia_node_refuses_a_class_of_another_shape() -> None:
    from actorstage.exceptions import InvalidDefinitionError
    from actorstage.pipelines import register_remotemedia_node

    class NoCleanup:
        async def initialize(self) -> None: ...
        async def process(self, data: Any) -> Any: ...

    with pytest.raises(InvalidDefinitionError, match="has no `cleanup`"):
        register_remotemedia_node("test.NoCleanup", NoCleanup)


async def test_the_channel_splitter_routes_audio_by_the_diarizers_segments() -> None:
    from actorstage.pipelines._media_nodes import AudioChannelSplitterNode

    splitter = await make(AudioChannelSplitterNode, maxSpeakers=4)
    loud = Audio(array("f", [0.5] * 1600).tobytes(), 16000, 1, "f32")  # 0.1 s
    assert await splitter.process(loud) == loud  # no segments yet: as it came
    assert await splitter.process({"segments": [
        {"start": 1.0, "end": 1.05, "speaker": "0"}, {"start": 1.05, "end": 1.2, "speaker": "1"},
        {"start": 1.3, "end": 1.4, "speaker": "2"}, {"bad": 1}],
        "num_speakers": 3, "time_offset": 1.0}) is None
    streams = [item async for item in await splitter.process(loud)]
    assert [item.metadata["stream_id"] for item in streams] == ["speaker_0", "speaker_1"]
    first, second = (list(item.samples()) for item in streams)
    assert first == [0.5] * 800 + [0.0] * 800 and second == [0.0] * 800 + [0.5] * 800
    wide = await make(AudioChannelSplitterNode, output_mode="channels")
    await wide.process({"segments": [{"start": 0, "end": 0.05, "speaker": "1"}],
                        "num_speakers": 2})
    stereo = await wide.process(sine(1600, 16000, 0.5, channels=2))
    values = stereo.samples()
    assert stereo.channels == 2 and values[0::2] == array("f", [0.0] * 1600)
    assert any(values[1:1600:2]) and not any(values[1601::2])
