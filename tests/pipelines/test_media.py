"""Media items (audio formats, video frames, tensors) and the node types under RemoteMedia's
names, in this process and in node processes."""

from __future__ import annotations

from array import array

import msgspec
import numpy as np
import pytest

from actorstage.pipelines import Audio, Tensor, VideoFrame
from actorstage.pipelines._media_nodes import VideoFlipNode
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
