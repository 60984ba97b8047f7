"""Node types under RemoteMedia's names, for its manifests and clients (see the
compatibility guide): pass-through, echo, video flip, a resampler, and the audio
analysis nodes, whose JSON events have RemoteMedia's fields.

The analysis nodes work on the samples as floats in [-1, 1] (any ``Audio``
format), give one event per ``Audio`` item, and pass anything else on as it came.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, Literal

import msgspec

from actorstage.pipelines._audio import Audio
from actorstage.pipelines._media import VideoFrame
from actorstage.pipelines._registry import Node, each, register_node
from actorstage.pipelines._wire import to_bytes

__all__ = [
    "AudioChannelSplitterNode",
    "AudioLevelNode",
    "AudioResampleNode",
    "ChannelBalanceNode",
    "ClippingDetectorNode",
    "EchoNode",
    "FastResampleNode",
    "PassThroughNode",
    "PassthroughNode",
    "SilenceDetectorNode",
    "VideoFlipNode",
]


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


# -- audio analysis ----------------------------------------------------------------------

_FLOOR_DB = -120.0  # the level of silence


def _rms(values: Any) -> float:
    return math.sqrt(sum(value * value for value in values) / len(values)) if values else 0.0


def _db(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 0 else _FLOOR_DB


def _event(schema: str, audio: Audio, **fields: Any) -> dict[str, Any]:
    """An event as RemoteMedia's analysis nodes give it: its fields, the stream id and
    timestamp (from the item's metadata, when it has them) and ``_schema``."""
    stamp = audio.metadata.get("timestamp_us")
    return {**fields, "stream_id": audio.metadata.get("stream_id"),
            "timestamp_us": int(stamp) if stamp and stamp.isdigit() else None,
            "_schema": schema}


class _LevelParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    low_volume_threshold_db: float = -20.0
    silence_threshold_db: float = -60.0


@register_node("AudioLevelNode")
class AudioLevelNode(Node):
    """The level of each ``Audio`` item: ``rms_db``, ``peak_db``, ``is_silence`` (RMS at
    or below ``silence_threshold_db``), ``is_low_volume`` (at or below
    ``low_volume_threshold_db``) and ``health`` (0 silent .. 1 loud enough)."""

    Params = _LevelParams

    async def process(self, item: Any) -> Any:
        if not isinstance(item, Audio):
            return item
        values = item.as_format("f32").samples()
        rms_db = _db(_rms(values))
        peak_db = _db(max(map(abs, values), default=0.0))
        low, silent = self.params.low_volume_threshold_db, self.params.silence_threshold_db
        is_silence = rms_db <= silent
        health = 0.0 if is_silence else 1.0 if rms_db >= low else min(
            max((rms_db - silent) / (low - silent), 0.0), 1.0)
        return _event("audio_level_event", item, rms_db=rms_db, peak_db=peak_db,
                      is_low_volume=not is_silence and rms_db <= low, is_silence=is_silence,
                      health=health)


class _SilenceParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    silence_threshold_db: float = -50.0
    sustained_silence_ms: float = 500.0
    dropout_count_threshold: int = 3
    dropout_window_ms: float = 5000.0


@register_node("SilenceDetectorNode")
class SilenceDetectorNode(Node):
    """Silence over the stream: how long it has lasted (``silence_duration_ms``, sustained
    from ``sustained_silence_ms``), and dropouts (silences begun within
    ``dropout_window_ms``; intermittent from ``dropout_count_threshold``). Time is the
    item's ``timestamp_us`` metadata, or the stream's own clock (samples so far)."""

    Params = _SilenceParams

    async def setup(self) -> None:
        self.silent_frames = 0
        self.was_silent = False
        self.transitions: list[tuple[float, bool]] = []  # (time in us, silent after it)
        self.clock_frames = 0
        self.rate = 0

    async def process(self, item: Any) -> Any:
        if not isinstance(item, Audio):
            return item
        params = self.params
        self.rate = self.rate or item.sample_rate
        rms_db = _db(_rms(item.as_format("f32").samples()))
        is_silent = rms_db <= params.silence_threshold_db
        self.silent_frames = self.silent_frames + item.frames if is_silent else 0
        duration_ms = self.silent_frames * 1000.0 / self.rate if self.rate else 0.0
        stamp = item.metadata.get("timestamp_us", "")
        now = float(stamp) if stamp.isdigit() else self.clock_frames * 1e6 / item.sample_rate
        self.clock_frames += item.frames
        if is_silent != self.was_silent:
            self.transitions.append((now, is_silent))
            window = params.dropout_window_ms * 1000
            self.transitions = [(at, silent) for at, silent in self.transitions
                                if now - at < window]
        self.was_silent = is_silent
        dropouts = sum(1 for _at, silent in self.transitions if silent)
        sustained = duration_ms >= params.sustained_silence_ms
        health = 1.0 if not is_silent else 0.0 if sustained else \
            1.0 - duration_ms / params.sustained_silence_ms
        return _event("silence_event", item, is_silent=is_silent, rms_db=rms_db,
                      silence_duration_ms=duration_ms, is_sustained_silence=sustained,
                      dropout_count=dropouts,
                      has_intermittent_dropouts=dropouts >= params.dropout_count_threshold,
                      health=health)


class _ClippingParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    saturation_threshold: float = 0.99
    saturation_ratio_threshold: float = 1.0  # percent of samples
    crest_factor_threshold_db: float = 3.0


@register_node("ClippingDetectorNode")
class ClippingDetectorNode(Node):
    """Clipping in each ``Audio`` item: ``saturation_ratio`` (percent of samples at or
    above ``saturation_threshold``) and ``crest_factor_db`` (peak over RMS; 20 for
    silence); clipping when the ratio reaches ``saturation_ratio_threshold`` or the crest
    factor falls to ``crest_factor_threshold_db``."""

    Params = _ClippingParams

    async def process(self, item: Any) -> Any:
        if not isinstance(item, Audio):
            return item
        params = self.params
        values = item.as_format("f32").samples()
        ratio = 100.0 * sum(1 for value in values if abs(value) >= params.saturation_threshold
                            ) / len(values) if values else 0.0
        rms = _rms(values)
        crest = 0.0 if not values else 20.0 if rms <= 0 else \
            20.0 * math.log10(max(map(abs, values)) / rms)
        health = max(1.0 - min(ratio / params.saturation_ratio_threshold, 1.0), 0.0)
        return _event("clipping_event", item, saturation_ratio=ratio, crest_factor_db=crest,
                      is_clipping=ratio >= params.saturation_ratio_threshold
                      or crest <= params.crest_factor_threshold_db, health=health)


class _BalanceParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    imbalance_threshold_db: float = 10.0
    dead_channel_threshold_db: float = -60.0


@register_node("ChannelBalanceNode")
class ChannelBalanceNode(Node):
    """The balance of stereo ``Audio``: each channel's level, ``imbalance_db`` (left minus
    right), a dead channel (``"left"``, ``"right"`` or ``"none"``), ``health``. Other
    channel counts are balanced by definition. ``balance_ratio`` is ``null`` when only
    the right channel is silent (an infinite ratio)."""

    Params = _BalanceParams

    async def process(self, item: Any) -> Any:
        if not isinstance(item, Audio):
            return item
        if item.channels != 2:
            return _event("channel_balance_event", item, left_rms_db=0.0, right_rms_db=0.0,
                          balance_ratio=1.0, imbalance_db=0.0, is_imbalanced=False,
                          has_dead_channel=False, dead_channel="none", health=1.0)
        params = self.params
        values = item.as_format("f32").samples()
        left, right = _rms(values[0::2]), _rms(values[1::2])
        left_db, right_db = _db(left), _db(right)
        ratio = left / right if right > 0 else None if left > 0 else 1.0
        imbalance = left_db - right_db
        left_dead = left_db <= params.dead_channel_threshold_db
        right_dead = right_db <= params.dead_channel_threshold_db
        dead = "left" if left_dead and not right_dead else \
            "right" if right_dead and not left_dead else "none"
        health = 0.0 if dead != "none" else max(
            1.0 - min(abs(imbalance) / params.imbalance_threshold_db, 1.0), 0.0)
        return _event("channel_balance_event", item, left_rms_db=left_db,
                      right_rms_db=right_db, balance_ratio=ratio, imbalance_db=imbalance,
                      is_imbalanced=dead != "none"
                      or abs(imbalance) >= params.imbalance_threshold_db,
                      has_dead_channel=dead != "none", dead_channel=dead, health=health)


# -- resampling --------------------------------------------------------------------------


class _ResampleParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source_rate: int | Literal["auto"] | None = None
    target_rate: int | Literal["auto"] | None = None
    quality: Literal["Low", "Medium", "High"] = "Medium"
    channels: int | None = None

    def __post_init__(self) -> None:
        for name in ("source_rate", "target_rate"):
            rate = getattr(self, name)
            if isinstance(rate, int) and not 8000 <= rate <= 192_000:
                raise ValueError(f"{name} must be between 8000 and 192000, got {rate}")
        if self.channels is not None and not 1 <= self.channels <= 8:
            raise ValueError(f"channels must be between 1 and 8, got {self.channels}")


@register_node("FastResampleNode")
class FastResampleNode(Node):
    """Resamples ``Audio`` to ``target_rate`` (``"auto"`` or none: as it comes), one
    ``Audio`` out per item in, as 32-bit floats, the stream continuous across items
    (linear interpolation; ``quality`` is accepted, the interpolation is the same).
    ``source_rate``, when given, is checked against the items' rate."""

    Params = _ResampleParams
    aliases = {"sourceRate": "source_rate", "targetRate": "target_rate"}

    async def setup(self) -> None:
        self.position = 0.0  # of the next output frame, in input frames of the next item
        self.previous: list[float] | None = None  # the last frame of the item before
        self.rate: int | None = None

    async def process(self, item: Any) -> Any:
        if not isinstance(item, Audio):
            return item
        params = self.params
        target = params.target_rate if isinstance(params.target_rate, int) else None
        source = params.source_rate if isinstance(params.source_rate, int) else None
        if source is not None and item.sample_rate != source:
            raise ValueError(f"source_rate is {source} but the audio comes at "
                             f"{item.sample_rate} Hz")
        if params.channels is not None and item.channels != params.channels:
            raise ValueError(f"channels is {params.channels} but the audio has "
                             f"{item.channels}")
        if self.rate is not None and item.sample_rate != self.rate:
            raise ValueError(f"the stream changed sample rate from {self.rate} to "
                             f"{item.sample_rate}")
        self.rate = item.sample_rate
        floats = item.as_format("f32")
        if target is None or target == item.sample_rate:
            return floats
        channels = item.channels
        values = floats.samples()
        frames = len(values) // channels
        step = item.sample_rate / target
        previous = self.previous or [values[c] if frames else 0.0 for c in range(channels)]
        out = array("f")
        position = self.position
        while frames and position <= frames - 1:
            base = math.floor(position)
            fraction = position - base
            for channel in range(channels):
                before = previous[channel] if base < 0 else values[base * channels + channel]
                after = values[(base + 1) * channels + channel] if base + 1 < frames else \
                    before  # (at the last frame exactly: fraction 0)
                out.append(before + (after - before) * fraction)
            position += step
        if frames:
            self.position = position - frames
            self.previous = [values[(frames - 1) * channels + c] for c in range(channels)]
        return Audio.of_samples(out, target, channels, "f32", item.metadata)


@register_node("AudioResample")
class AudioResampleNode(FastResampleNode):
    """``FastResampleNode`` under the name RemoteMedia's manifests also use."""


# -- speakers ----------------------------------------------------------------------------


class _SplitterParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    output_mode: Literal["streams", "channels"] = "streams"
    max_speakers: int = 8
    stream_id_prefix: str = "speaker"
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if not 1 <= self.max_speakers <= 64:
            raise ValueError(f"max_speakers must be between 1 and 64, got {self.max_speakers}")


@register_node("AudioChannelSplitterNode")
class AudioChannelSplitterNode(Node):
    """Routes audio by speaker, after a diarizer's segments (RemoteMedia's node).

    A JSON item (a ``dict``) with ``segments`` (``[{"start", "end", "speaker"}]``,
    seconds; speakers named ``"0"``, ``"1"``...), ``num_speakers`` and ``time_offset``
    (the stream time of the next audio's start) sets what follows and gives nothing.
    Each ``Audio`` item (mixed down to mono) then comes out per speaker
    (``output_mode: streams``: one mono ``Audio`` per speaker who speaks in it, the
    others silent, ``stream_id`` ``<stream_id_prefix>_<n>`` in its metadata) or as one
    ``Audio`` with a channel per speaker (``channels``). Audio before any segments,
    and anything else, passes through.
    """

    Params = _SplitterParams
    aliases = {"outputMode": "output_mode", "maxSpeakers": "max_speakers",
               "streamIdPrefix": "stream_id_prefix", "sampleRate": "sample_rate"}

    async def setup(self) -> None:
        self.segments: list[tuple[float, float, str]] = []
        self.speakers = 0
        self.offset = 0.0

    async def process(self, item: Any) -> Any:
        if isinstance(item, dict):
            if isinstance(item.get("segments"), list):
                self.segments = [
                    (float(segment["start"]), float(segment["end"]), str(segment["speaker"]))
                    for segment in item["segments"]
                    if isinstance(segment, dict) and {"start", "end", "speaker"} <= set(segment)
                    and isinstance(segment["start"], int | float)
                    and isinstance(segment["end"], int | float)]
            if isinstance(item.get("num_speakers"), int):
                self.speakers = item["num_speakers"]
            if isinstance(item.get("time_offset"), int | float):
                self.offset = float(item["time_offset"])
            return None
        if not isinstance(item, Audio) or not self.segments:
            return item
        values = item.as_format("f32").samples()
        channels = max(item.channels, 1)
        mono = [sum(values[i:i + channels]) / channels
                for i in range(0, len(values) - len(values) % channels, channels)]
        count = min(self.speakers, self.params.max_speakers)
        tracks = [self._speaker(mono, item.sample_rate, str(index)) for index in range(count)]
        rate = item.sample_rate
        if self.params.output_mode == "channels":
            return Audio.of_samples((tracks[c][i] for i in range(len(mono))
                                     for c in range(count)), rate, count, "f32", item.metadata)
        return each([
            Audio.of_samples(track, rate, 1, "f32", {
                **item.metadata, "stream_id": f"{self.params.stream_id_prefix}_{index}"})
            for index, track in enumerate(tracks) if any(abs(v) > 0.0001 for v in track)])

    def _speaker(self, mono: list[float], rate: int, speaker: str) -> list[float]:
        out = [0.0] * len(mono)
        duration = len(mono) / rate
        for start, end, who in self.segments:
            if who != speaker:
                continue
            begin, finish = start - self.offset, end - self.offset
            if finish < 0 or begin > duration:
                continue
            first = min(int(max(begin, 0.0) * rate), len(mono))
            last = min(int(min(finish, duration) * rate), len(mono))
            out[first:last] = mono[first:last]
        return out

