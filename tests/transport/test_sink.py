"""``Sink``: a grpclib stream's receive buffer that hands whole messages on as they arrive."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from grpclib.exceptions import GRPCError
from grpclib.protocol import Buffer

from actorstage.transport._grpc import MessageTooLarge, Sink, sink

pytestmark = pytest.mark.anyio


def framed(body: bytes) -> bytes:
    return struct.pack(">?I", False, len(body)) + body


class Seen:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.messages: list[bytes] = []
        self.failures: list[Exception] = []

    def sink(self, limit: int = 1000) -> Sink:
        return Sink(self.acked.append, limit, self.messages.append, self.failures.append)


async def test_messages_come_out_whole_and_in_order_however_the_data_is_cut() -> None:
    seen = Seen()
    box = seen.sink()
    data = framed(b"one") + framed(b"") + framed(b"three" * 10) + framed(b"four")
    cuts = [1, 4, 5, 9, 30, len(data) - 2, len(data)]  # in the prefix, in a body, across
    start = 0
    for cut in cuts:
        box.add(data[start:cut], cut - start)
        start = cut
    assert seen.messages == [b"one", b"", b"three" * 10, b"four"]
    assert seen.acked == [cut - before for before, cut in zip([0, *cuts], cuts, strict=False)]
    assert seen.failures == [] and box.pending == bytearray()


async def test_a_message_over_the_limit_fails_before_its_body_is_kept() -> None:
    seen = Seen()
    box = seen.sink(limit=10)
    box.add(framed(b"ok") + struct.pack(">?I", False, 11) + b"x" * 5, 12 + 5)
    [failure] = seen.failures
    assert isinstance(failure, MessageTooLarge) and (failure.size, failure.limit) == (11, 10)
    box.add(b"x" * 6 + framed(b"late"), 15)  # what follows is dropped, still acknowledged
    assert seen.messages == [b"ok"] and len(seen.failures) == 1
    assert seen.acked == [17, 15] and box.pending == bytearray()


async def test_a_compressed_message_or_an_error_taking_one_fails_the_sink_once() -> None:
    seen = Seen()
    box = seen.sink()
    box.add(struct.pack(">?I", True, 2) + b"zz", 7)
    [failure] = seen.failures
    assert isinstance(failure, GRPCError) and "compressed" in str(failure.message)

    def refuse(message: bytes) -> None:
        raise ValueError(f"cannot take {message!r}")

    failures: list[Exception] = []
    box = Sink(lambda size: None, 100, refuse, failures.append)
    box.add(framed(b"a") + framed(b"b"), 12)
    [failure] = failures
    assert isinstance(failure, ValueError) and str(failure) == "cannot take b'a'"


async def test_the_end_of_the_stream_still_reaches_a_reader() -> None:
    box = Seen().sink()
    box.add(framed(b"x"), 6)
    box.eof()
    assert await box.read(5) == b""


async def test_put_in_place_it_takes_over_what_the_old_buffer_held_in_order() -> None:
    acked: list[int] = []
    old = Buffer(acked.append)
    data = framed(b"zero") + framed(b"first") + framed(b"second")
    old.add(data[:14], 14)
    assert await old.read(5) == data[:5] and await old.read(4) == b"zero"  # a reader's
    old.add(data[14:], len(data) - 14)  # (not acknowledged until read)
    stream = SimpleNamespace(_stream=SimpleNamespace(buffer=old))
    messages: list[bytes] = []
    sink(stream, 100, messages.append, lambda exc: None)
    assert messages == [b"first", b"second"]
    assert isinstance(stream._stream.buffer, Sink)
    assert acked == [14, len(data) - 14]  # each byte acknowledged once
    stream._stream.buffer.add(framed(b"third"), 10)
    assert messages[-1] == b"third"
