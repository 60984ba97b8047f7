"""The built-in nodes on real data: audio, JSON mapping, callables, the collector."""

from __future__ import annotations

import itertools
import math
from array import array
from typing import Any

import pytest

from actorstage.pipelines import (
    Audio,
    AudioChunk,
    AudioChunkerNode,
    CallableNode,
    CollectorNode,
    GainNode,
    JsonMapperNode,
    PipelineError,
    ResamplerNode,
    SpeechSegment,
    VadNode,
    registered_nodes,
)
from actorstage.pipelines._builtin import level_db
from tests.pipelines.helpers import node, pipeline

pytestmark = pytest.mark.anyio


def tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> bytes:
    count = round(seconds * rate)
    return array("h", (round(amp * 32767 * math.sin(2 * math.pi * freq * i / rate))
                       for i in range(count))).tobytes()


async def make(cls: Any, **params: Any) -> Any:
    entry = next(e for e in registered_nodes().values() if e.cls is cls)
    instance = cls(entry.params(params), "n")
    await instance.setup()
    return instance


async def collect(result: Any) -> list[Any]:
    if result is None:
        return []
    if hasattr(result, "__anext__"):
        return [item async for item in result]
    return [result]


async def test_the_chunker_cuts_exact_chunks_across_inputs_and_flushes_the_rest() -> None:
    chunker = await make(AudioChunkerNode, chunk_ms=10)
    pcm = tone(0.095, 8000)  # 760 samples: 9 chunks of 80 and 40 left
    chunks = await collect(await chunker.process(Audio(pcm[:333], 8000)))
    chunks += await collect(await chunker.process(Audio(pcm[333:], 8000)))
    chunks += await collect(await chunker.flush())
    assert [len(c.pcm) for c in chunks] == [160] * 9 + [80]
    assert b"".join(c.pcm for c in chunks) == pcm
    assert [c.index for c in chunks] == list(range(10))
    assert chunks[3].start == pytest.approx(0.03) and chunks[3].sample_rate == 8000


async def test_the_chunker_mixes_stereo_down_and_refuses_a_rate_change() -> None:
    chunker = await make(AudioChunkerNode, chunk_ms=10)
    stereo = array("h", [100, 300] * 80).tobytes()
    [chunk] = await collect(await chunker.process(Audio(stereo, 8000, channels=2)))
    assert array("h", chunk.pcm) == array("h", [200] * 80)
    with pytest.raises(ValueError, match="changed sample rate from 8000 to 16000"):
        await chunker.process(Audio(stereo, 16000))


async def test_the_resampler_keeps_duration_and_frequency_across_chunks() -> None:
    resampler = await make(ResamplerNode, target_rate=16000)
    pcm = tone(1.0, 48000, freq=440)
    size = 960 * 2  # 20 ms chunks
    out = [await resampler.process(AudioChunk(pcm[i:i + size], 48000, n, 0.0))
           for n, i in enumerate(range(0, len(pcm), size))]
    samples = array("h", b"".join(chunk.pcm for chunk in out))
    assert abs(len(samples) - 16000) <= 1
    assert all(chunk.sample_rate == 16000 for chunk in out)
    # zero crossings of a 440 Hz tone over one second: 880 (continuous at the seams)
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    assert abs(crossings - 880) <= 2
    expected = [round(0.5 * 32767 * math.sin(2 * math.pi * 440 * i / 16000))
                for i in range(len(samples))]
    assert max(abs(a - b) for a, b in zip(samples, expected, strict=True)) < 200


async def test_gain_scales_and_clips() -> None:
    gain = await make(GainNode, gain_db=-6.0206)
    chunk = AudioChunk(array("h", [1000, -1000, 32767]).tobytes(), 8000, 0, 0.0)
    assert array("h", (await gain.process(chunk)).pcm) == array("h", [500, -500, 16383])
    loud = await make(GainNode, gain_db=20)
    assert array("h", (await loud.process(chunk)).pcm) == array("h", [10000, -10000, 32767])


async def test_vad_finds_speech_segments_and_closes_the_last_one_on_flush() -> None:
    vad = await make(VadNode, threshold_db=-30, min_speech_ms=40, hangover_ms=60)
    rate, ms = 8000, 20
    quiet, loud = bytes(2 * 160), tone(0.02, rate, amp=0.3)
    pattern = [quiet] * 5 + [loud] * 10 + [quiet] * 5 + [loud] * 1 + [quiet] * 5 + [loud] * 4
    found: list[SpeechSegment] = []
    for index, pcm in enumerate(pattern):
        found += await collect(await vad.process(AudioChunk(pcm, rate, index, index * ms / 1000)))
    found += await collect(await vad.flush())
    assert [(s.start, s.end, s.chunks) for s in found] == [(0.1, 0.3, 10), (0.52, 0.6, 4)]
    assert found[0].peak_db == pytest.approx(level_db(array("h", loud)), abs=0.01)


async def test_the_json_mapper_maps_paths_with_defaults_and_names_what_is_missing() -> None:
    mapper = await make(JsonMapperNode, fields={"user": "a.b", "first": "tags.0", "x": "nope"},
                        defaults={"x": 7})
    out = await mapper.process({"a": {"b": "ann"}, "tags": ["t1", "t2"], "other": 1})
    assert out == {"user": "ann", "first": "t1", "x": 7}
    keeper = await make(JsonMapperNode, fields={"user": "a.b"}, keep=True)
    assert await keeper.process({"a": {"b": 1}, "z": 2}) == {"a": {"b": 1}, "z": 2, "user": 1}
    strict = await make(JsonMapperNode, fields={"user": "a.c"})
    with pytest.raises(KeyError, match=r"the item has no 'a.c' \(for field 'user'\)"):
        await strict.process({"a": {}})


def shout(item: str) -> str:
    return item.upper() + "!"


async def whisper(item: str) -> str:
    return item.lower()


async def test_the_callable_node_calls_sync_and_async_functions_and_checks_the_name() -> None:
    assert await (await make(CallableNode, function=f"{__name__}:shout")).process("hi") == "HI!"
    assert await (await make(CallableNode, function=f"{__name__}:whisper")).process("HI") == "hi"
    with pytest.raises(ValueError, match="has no nothing_here"):
        await make(CallableNode, function=f"{__name__}:nothing_here")
    with pytest.raises(ValueError, match="must look like 'module:name'"):
        await make(CallableNode, function="shout")


async def test_the_collector_hands_over_one_list_and_refuses_past_its_limit() -> None:
    collector = await make(CollectorNode, max_items=2)
    for item in ("a", memoryview(b"bc")):
        assert await collector.process(item) is None
    with pytest.raises(OverflowError, match="max_items"):
        await collector.process("d")
    assert await collector.flush() == ["a", b"bc"]


async def test_node_params_out_of_range_are_manifest_problems() -> None:
    from actorstage.pipelines import ManifestError

    with pytest.raises(ManifestError, match=r"nodes\[0\]\.params: target_rate must be between"):
        pipeline([node("r", "ResamplerNode", target_rate=5)])


async def test_a_callable_node_in_a_process_gets_its_function_there() -> None:
    result = await pipeline([node("c", "CallableNode", "process",
                                  function=f"{__name__}:shout")]).run(["a", "b"])
    assert [output.item for output in result.outputs] == ["A!", "B!"]
    with pytest.raises(PipelineError, match="failed to start: ValueError: function"):
        await pipeline([node("c", "CallableNode", "process",
                             function=f"{__name__}:absent")]).run(["a"])
