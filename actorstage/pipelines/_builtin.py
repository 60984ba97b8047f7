"""The built-in node types: audio (chunker, resampler, gain, voice activity), JSON field
mapping, a Python callable, a collector and an identity node.

The audio nodes work on 16-bit PCM with the standard library's ``array``:
no NumPy needed. Large ``pcm`` payloads may arrive as read-only
``memoryview``s of shared memory; every node here reads them without a copy
(``array.frombytes`` takes any buffer).
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
from array import array
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from actorstage.pipelines._audio import Audio, AudioChunk, SpeechSegment
from actorstage.pipelines._registry import Node, register_node
from actorstage.pipelines._wire import to_bytes

__all__ = [
    "AudioChunkerNode",
    "CallableNode",
    "CollectorNode",
    "GainNode",
    "IdentityNode",
    "JsonMapperNode",
    "ResamplerNode",
    "VadNode",
]

_BIG_ENDIAN = sys.byteorder == "big"


def _samples(pcm: Any) -> array[int]:
    """16-bit little-endian PCM as an ``array('h')``."""
    samples = array("h")
    samples.frombytes(pcm)
    if _BIG_ENDIAN:  # pragma: no cover - tested on little-endian machines
        samples.byteswap()
    return samples


def _pcm(samples: array[int]) -> bytes:
    if _BIG_ENDIAN:  # pragma: no cover
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def _clip(value: float) -> int:
    return -32768 if value < -32768 else 32767 if value > 32767 else round(value)


class _ChunkerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    chunk_ms: float = 20.0
    sample_rate: int = 16000  # for inputs that are bare PCM bytes
    chunk_size: int | None = None  # RemoteMedia's: Audio chunks of this many samples

    def __post_init__(self) -> None:
        if self.chunk_size is not None and not 1 <= self.chunk_size <= 65536:
            raise ValueError(f"chunk_size must be between 1 and 65536, got {self.chunk_size}")
        if not 1 <= self.chunk_ms <= 60_000:
            raise ValueError(f"chunk_ms must be between 1 and 60000, got {self.chunk_ms}")
        if not 1000 <= self.sample_rate <= 384_000:
            raise ValueError(f"sample_rate must be between 1000 and 384000, got {self.sample_rate}")


@register_node("AudioChunkerNode")
class AudioChunkerNode(Node):
    """Cuts a PCM stream into ``AudioChunk``s of ``chunk_ms`` (the last one may be shorter).

    Takes ``Audio`` items (stereo and wider is mixed down to mono) or bare
    16-bit mono PCM bytes at ``sample_rate``. Consecutive inputs are one
    stream: a chunk may span two of them.

    With ``chunk_size`` (RemoteMedia's ``AudioChunkerNode``, also spelled
    ``chunkSize``), it cuts ``Audio`` items instead into ``Audio`` chunks of
    exactly ``chunk_size`` 32-bit float samples each (interleaved, channels
    kept); what is left at the end comes out on flush.
    """

    Params = _ChunkerParams
    aliases = {"chunkSize": "chunk_size", "sampleRate": "sample_rate"}

    async def setup(self) -> None:
        self.floats = array("f")  # (chunk_size mode) samples not yet in a chunk
        self.shape: Audio | None = None  # the stream's rate, channels and metadata
        self.rest = bytearray()
        self.rate: int | None = None
        self.index = 0
        self.offset = 0  # samples already cut

    def _chunk(self, pcm: bytes, rate: int) -> AudioChunk:
        chunk = AudioChunk(pcm, rate, self.index, self.offset / rate)
        self.index += 1
        self.offset += len(pcm) // 2
        return chunk

    async def process(self, item: Any) -> AsyncIterator[Any]:
        pcm: Any
        if self.params.chunk_size is not None:
            return self._sized(item)
        if isinstance(item, Audio):
            item = item.as_format("i16")
            rate, channels, pcm = item.sample_rate, item.channels, item.pcm
        elif isinstance(item, bytes | bytearray | memoryview):
            rate, channels, pcm = self.params.sample_rate, 1, item
        else:
            raise TypeError(f"AudioChunkerNode takes Audio or PCM bytes, not "
                            f"{type(item).__name__}")
        if channels < 1:
            raise ValueError(f"an Audio item has channels >= 1, got {channels}")
        if self.rate is not None and rate != self.rate:
            raise ValueError(f"the stream changed sample rate from {self.rate} to {rate}")
        self.rate = rate
        if channels > 1:
            wide = _samples(memoryview(pcm)[:len(pcm) - len(pcm) % (2 * channels)])
            mono = array("h", (sum(wide[i:i + channels]) // channels
                               for i in range(0, len(wide), channels)))
            pcm = _pcm(mono)
        return self._cut(pcm, rate)

    async def _cut(self, pcm: Any, rate: int) -> AsyncIterator[AudioChunk]:
        size = 2 * max(1, round(rate * self.params.chunk_ms / 1000))
        view = memoryview(pcm).cast("B")
        start = 0
        if self.rest:
            need = size - len(self.rest)
            self.rest += view[:need]
            start = need
            if len(self.rest) < size:
                return
            yield self._chunk(bytes(self.rest), rate)
            self.rest.clear()
        while start + size <= len(view):
            yield self._chunk(bytes(view[start:start + size]), rate)
            start += size
        self.rest += view[start:]

    async def _sized(self, item: Any) -> AsyncIterator[Audio]:
        if not isinstance(item, Audio):
            raise TypeError(f"AudioChunkerNode with chunk_size takes Audio items, not "
                            f"{type(item).__name__}")
        if self.shape is not None and item.sample_rate != self.shape.sample_rate:
            raise ValueError(f"the stream changed sample rate from {self.shape.sample_rate} "
                             f"to {item.sample_rate}")
        self.shape = item
        self.floats.extend(item.as_format("f32").samples())
        size = self.params.chunk_size
        while len(self.floats) >= size:
            yield self._floats_chunk(self.floats[:size])
            del self.floats[:size]

    def _floats_chunk(self, values: array[float]) -> Audio:
        assert self.shape is not None
        return Audio.of_samples(values, self.shape.sample_rate, self.shape.channels, "f32",
                                self.shape.metadata)

    async def flush(self) -> Any:
        if self.params.chunk_size is not None:
            if not self.floats:
                return None
            chunk = self._floats_chunk(self.floats)
            self.floats = array("f")
            return chunk
        if len(self.rest) >= 2 and self.rate is not None:
            tail = bytes(self.rest[:len(self.rest) - len(self.rest) % 2])
            self.rest.clear()
            return self._chunk(tail, self.rate)
        return None


class _ResamplerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    target_rate: int = 16000

    def __post_init__(self) -> None:
        if not 1000 <= self.target_rate <= 384_000:
            raise ValueError(f"target_rate must be between 1000 and 384000, "
                             f"got {self.target_rate}")


@register_node("ResamplerNode")
class ResamplerNode(Node):
    """Resamples a stream of ``AudioChunk``s to ``target_rate`` by linear interpolation.

    The stream stays continuous across chunks (no clicks at the seams);
    each input chunk gives one output chunk with the same ``index``.
    """

    Params = _ResamplerParams

    async def setup(self) -> None:
        self.rate: int | None = None
        self.position = 0.0  # where the next output sample falls, in input samples
        self.seen = 0  # input samples before the current chunk
        self.last = 0  # the previous chunk's last sample
        self.produced = 0

    async def process(self, chunk: AudioChunk) -> AudioChunk:
        target = self.params.target_rate
        if self.rate is None:
            self.rate = chunk.sample_rate
        elif chunk.sample_rate != self.rate:
            raise ValueError(f"the stream changed sample rate from {self.rate} to "
                             f"{chunk.sample_rate}")
        samples = _samples(chunk.pcm)
        if chunk.sample_rate == target:
            out = samples
        else:
            out = self._resample(samples, chunk.sample_rate / target)
        start = self.produced / target
        self.produced += len(out)
        return AudioChunk(_pcm(out), target, chunk.index, start)

    def _resample(self, samples: array[int], step: float) -> array[int]:
        count = len(samples)
        out = array("h")
        if count == 0:
            return out
        seen, last, position = self.seen, self.last, self.position
        end = seen + count - 1  # the last input index available
        while position < end:
            index = int(position)
            frac = position - index
            local = index - seen
            left = samples[local] if local >= 0 else last
            right = samples[local + 1]
            out.append(_clip(left + (right - left) * frac))
            position += step
        self.seen, self.last, self.position = seen + count, samples[-1], position
        return out


class _GainParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    gain_db: float = 0.0

    def __post_init__(self) -> None:
        if not -60 <= self.gain_db <= 60:
            raise ValueError(f"gain_db must be between -60 and 60, got {self.gain_db}")


@register_node("GainNode")
class GainNode(Node):
    """Multiplies ``AudioChunk`` samples by ``gain_db`` decibels, clipping at full scale."""

    Params = _GainParams

    async def process(self, chunk: AudioChunk) -> AudioChunk:
        factor = 10 ** (self.params.gain_db / 20)
        samples = _samples(chunk.pcm)
        out = array("h", [_clip(value * factor) for value in samples])
        return AudioChunk(_pcm(out), chunk.sample_rate, chunk.index, chunk.start)


class _VadParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    threshold_db: float = -35.0
    min_speech_ms: float = 60.0
    hangover_ms: float = 200.0

    def __post_init__(self) -> None:
        if not -120 <= self.threshold_db <= 0:
            raise ValueError(f"threshold_db must be between -120 and 0 (dBFS), "
                             f"got {self.threshold_db}")
        for name in ("min_speech_ms", "hangover_ms"):
            if not 0 <= getattr(self, name) <= 60_000:
                raise ValueError(f"{name} must be between 0 and 60000")


def level_db(samples: array[int]) -> float:
    """The RMS level of 16-bit samples in dB relative to full scale (-inf for silence)."""
    if not samples:
        return -math.inf
    power = math.fsum(value * value for value in samples) / len(samples)
    return 10 * math.log10(power / (32768.0 * 32768.0)) if power > 0 else -math.inf


@register_node("VadNode")
class VadNode(Node):
    """Energy-based voice activity detection over ``AudioChunk``s: emits ``SpeechSegment``s.

    A chunk is voiced when its RMS level reaches ``threshold_db``. A segment
    ends after ``hangover_ms`` of unvoiced audio; segments shorter than
    ``min_speech_ms`` are dropped. The segment still open at the end of the
    stream is emitted by ``flush``.
    """

    Params = _VadParams

    async def setup(self) -> None:
        self.start: float | None = None
        self.voiced_end = 0.0
        self.peak = -math.inf
        self.chunks = 0

    def _close(self) -> SpeechSegment | None:
        start, self.start = self.start, None
        if start is None:
            return None
        segment = SpeechSegment(round(start, 4), round(self.voiced_end, 4), round(self.peak, 2),
                                self.chunks)
        self.peak, self.chunks = -math.inf, 0
        if (segment.end - segment.start) * 1000 < self.params.min_speech_ms:
            return None
        return segment

    async def process(self, chunk: AudioChunk) -> SpeechSegment | None:
        level = level_db(_samples(chunk.pcm))
        end = chunk.start + chunk.duration
        if level >= self.params.threshold_db:
            if self.start is None:
                self.start = chunk.start
            self.voiced_end = end
            self.peak = max(self.peak, level)
            self.chunks += 1
            return None
        if self.start is not None and (end - self.voiced_end) * 1000 >= self.params.hangover_ms:
            return self._close()
        return None

    async def flush(self) -> SpeechSegment | None:
        return self._close()


class _MapperParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    fields: dict[str, str]
    defaults: dict[str, Any] = {}
    keep: bool = False


_MISSING = object()


def _lookup(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            index = int(part)
            value = value[index] if -len(value) <= index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


@register_node("JsonMapperNode")
class JsonMapperNode(Node):
    """Builds a new mapping from each item: ``fields`` maps output keys to dotted input paths.

    ``{"fields": {"user": "payload.user.name", "first": "tags.0"}}``. A path
    that is missing takes its value from ``defaults``, or fails the item
    with an error naming the path. With ``keep``, the input's other keys
    are kept too. Struct items are read as their JSON-like form.
    """

    Params = _MapperParams

    async def process(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            item = msgspec.to_builtins(item)
            if not isinstance(item, dict):
                raise TypeError(f"JsonMapperNode takes mappings, not {type(item).__name__}")
        out: dict[str, Any] = dict(item) if self.params.keep else {}
        for key, path in self.params.fields.items():
            value = _lookup(item, path)
            if value is _MISSING:
                if key not in self.params.defaults:
                    raise KeyError(f"JsonMapperNode {self.id!r}: the item has no {path!r} "
                                   f"(for field {key!r}) and there is no default")
                value = self.params.defaults[key]
            out[key] = value
        return out


class _CallableParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    function: str  # "module:qualified.name"


def resolve_callable(spec: str) -> Callable[..., Any]:
    """The callable named ``module:qualified.name``; ``ValueError`` naming what is missing."""
    module_name, _, qualname = spec.partition(":")
    if not module_name or not qualname:
        raise ValueError(f"function {spec!r} must look like 'module:name'")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part, _MISSING)
        if target is _MISSING:
            raise ValueError(f"function {spec!r}: {module_name} has no {qualname}")
    if not callable(target):
        raise ValueError(f"function {spec!r} is not callable")
    return target  # type: ignore[no-any-return]


@register_node("CallableNode")
class CallableNode(Node):
    """Calls a Python function (``"module:name"``) on each item: sync or async.

    It returns what ``process`` would: an item, ``None``, or an async
    iterator. A sync function runs on the node's event loop; give a
    CPU-heavy one ``executor: process``.
    """

    Params = _CallableParams

    async def setup(self) -> None:
        self.function = resolve_callable(self.params.function)

    async def process(self, item: Any) -> Any:
        result = self.function(item)
        if inspect.isawaitable(result):
            result = await result
        return result


class _CollectorParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_items: int = 100_000

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {self.max_items}")


@register_node("CollectorNode")
class CollectorNode(Node):
    """Gathers every item; at the end of the stream, passes on one list of them, in order.

    More than ``max_items`` fails the item that overflows (the collector is
    a sink for results, not a buffer for a stream).
    """

    Params = _CollectorParams

    async def setup(self) -> None:
        self.items: list[Any] = []

    async def process(self, item: Any) -> None:
        if len(self.items) >= self.params.max_items:
            raise OverflowError(f"CollectorNode {self.id!r} holds max_items "
                                f"({self.params.max_items}) already")
        self.items.append(to_bytes(item))  # shared memory is let go when the item is done

    async def flush(self) -> list[Any]:
        items, self.items = self.items, []
        return items


@register_node("IdentityNode")
class IdentityNode(Node):
    """Passes every item on unchanged."""

    async def process(self, item: Any) -> Any:
        return item
