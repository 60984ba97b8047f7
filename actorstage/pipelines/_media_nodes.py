"""Node types under RemoteMedia's names, for its manifests and clients (see the
compatibility guide): pass-through, echo and video flip so far.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from actorstage.pipelines._media import VideoFrame
from actorstage.pipelines._registry import Node, register_node
from actorstage.pipelines._wire import to_bytes

__all__ = ["EchoNode", "PassThroughNode", "PassthroughNode", "VideoFlipNode"]


@register_node("PassThrough")
class PassThroughNode(Node):
    """Gives every item on as it came (RemoteMedia's ``PassThrough``)."""

    async def process(self, item: Any) -> Any:
        return item


@register_node("PassthroughNode")
class PassthroughNode(PassThroughNode):
    """``PassThrough`` under its other spelling."""


@register_node("EchoNode")
class EchoNode(Node):
    """Gives every item back unchanged, from a process of its own: RemoteMedia's Python
    echo node, which runs out of process there too."""

    executor = "process"

    async def process(self, item: Any) -> Any:
        return item


class _FlipParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    direction: Literal["vertical", "horizontal", "both"] = "vertical"


_PACKED = {"rgb24": 3, "rgba32": 4, "gray8": 1}


def _rows(plane: bytes, width: int, height: int) -> list[bytes]:
    return [plane[row * width:(row + 1) * width] for row in range(height)]


def _mirror(row: bytes, size: int) -> bytes:
    if size == 1:
        return row[::-1]
    return b"".join(row[start:start + size] for start in range(len(row) - size, -1, -size))


def _flip_plane(plane: bytes, width: int, height: int, size: int, direction: str) -> bytes:
    rows = _rows(plane, width * size, height)
    if direction in ("horizontal", "both"):
        rows = [_mirror(row, size) for row in rows]
    if direction in ("vertical", "both"):
        rows.reverse()
    return b"".join(rows)


@register_node("VideoFlip")
class VideoFlipNode(Node):
    """Flips ``VideoFrame``s (``direction``: ``vertical``, the default, ``horizontal`` or
    ``both``). Takes ``rgb24``, ``rgba32``, ``gray8`` and the planar ``i420``/``yuv420p``;
    a frame whose size does not match its format is an error naming both."""

    Params = _FlipParams

    async def process(self, item: Any) -> VideoFrame:
        if not isinstance(item, VideoFrame):
            raise TypeError(f"VideoFlip takes VideoFrame items, not {type(item).__name__}")
        expected = item.expected_size()
        pixels = to_bytes(item.pixels)
        if expected is None or item.format not in (*_PACKED, "i420", "yuv420p"):
            raise ValueError(f"VideoFlip takes rgb24, rgba32, gray8, i420 or yuv420p frames, "
                             f"not {item.format}")
        if len(pixels) != expected:
            raise ValueError(f"a {item.width}x{item.height} {item.format} frame holds "
                             f"{expected} bytes, this one {len(pixels)}")
        width, height, direction = item.width, item.height, self.params.direction
        if item.format in _PACKED:
            flipped = _flip_plane(pixels, width, height, _PACKED[item.format], direction)
        else:  # a full-size Y plane, then quarter-size U and V planes
            luma = width * height
            chroma = (width // 2) * (height // 2)
            planes = [(pixels[:luma], width, height),
                      (pixels[luma:luma + chroma], width // 2, height // 2),
                      (pixels[luma + chroma:], width // 2, height // 2)]
            flipped = b"".join(_flip_plane(plane, w, h, 1, direction)
                               for plane, w, h in planes)
        return msgspec.structs.replace(item, pixels=flipped)
