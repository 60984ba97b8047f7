"""Media items beside ``Audio``: video frames, tensors, file references, control messages.

These are RemoteMedia's ``DataBuffer`` kinds as pipeline items (see the
compatibility guide): any node may take and give them, in this process or
another; their ``bytes`` fields cross processes through shared memory when
large, like any Struct's. JSON, text and binary buffers are plain Python
values (the decoded JSON, ``str``, ``bytes``).

No ``from __future__ import annotations`` here: these Structs are
re-exported from ``actorstage.pipelines`` under that module name, which is
also the name a node process finds them by.
"""

from typing import Any, Literal

from actorstage.actors._message import Message

__all__ = ["Control", "FileRef", "PixelFormat", "Tensor", "VideoFrame"]

PixelFormat = Literal["rgb24", "rgba32", "yuv420p", "gray8", "i420", "nv12", "encoded"]
_PIXEL_BYTES = {"rgb24": 3.0, "rgba32": 4.0, "gray8": 1.0, "yuv420p": 1.5, "i420": 1.5,
                "nv12": 1.5}


class VideoFrame(Message, frozen=True):
    """One picture: ``pixels`` in ``format``, rows top to bottom (``encoded``: a
    compressed frame of ``codec``, ``"vp8"``, ``"h264"`` or ``"av1"``)."""

    pixels: bytes
    width: int
    height: int
    format: PixelFormat = "rgb24"
    frame_number: int = 0
    timestamp_us: int = 0
    codec: str = ""
    keyframe: bool = False
    metadata: dict[str, str] = {}

    def expected_size(self) -> int | None:
        """Bytes a raw frame of this size and format holds (``None`` when encoded)."""
        per_pixel = _PIXEL_BYTES.get(self.format)
        return None if per_pixel is None else int(self.width * self.height * per_pixel)


class Tensor(Message, frozen=True):
    """An n-dimensional array: ``data`` row-major (C order) unless ``strides`` say
    otherwise; ``dtype`` in NumPy's spelling (``"float32"``, ``"uint8"``...)."""

    data: bytes
    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str = ""  # "NCHW", "NHWC", ... when it matters
    strides: tuple[int, ...] = ()
    metadata: dict[str, str] = {}

    def array(self) -> Any:
        """A read-only NumPy view of ``data`` (needs NumPy)."""
        import numpy as np

        values = np.frombuffer(self.data, dtype=np.dtype(self.dtype))
        if self.strides:
            return np.lib.stride_tricks.as_strided(values, self.shape, self.strides,
                                                   writeable=False)
        return values.reshape(self.shape)

    @classmethod
    def of(cls, values: Any, **fields: Any) -> "Tensor":
        """The ``Tensor`` of a NumPy array (copied into C order)."""
        import numpy as np

        values = np.ascontiguousarray(values)
        return cls(values.tobytes(), tuple(values.shape), str(values.dtype), **fields)


class FileRef(Message, frozen=True):
    """A file (or a byte range of one) that the nodes read where it is."""

    path: str
    filename: str = ""
    mime_type: str = ""
    size: int = 0
    offset: int = 0
    length: int = 0  # 0: to the end
    stream_id: str = ""
    metadata: dict[str, str] = {}


class Control(Message, frozen=True):
    """A control message in the stream: ``kind`` says which, ``values`` its numbers
    (``cancel_speculation``: from_timestamp, to_timestamp; ``batch_hint``:
    suggested_batch_size; ``deadline_warning``: deadline_us)."""

    kind: Literal["cancel_speculation", "batch_hint", "deadline_warning", ""]
    values: dict[str, int] = {}
    segment_id: str = ""
    timestamp_ms: int = 0
    detail: str = ""  # JSON text
    metadata: dict[str, str] = {}
