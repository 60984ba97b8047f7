"""TCP with TLS between the processes of a tree: a child and a grandchild over it, plain
TCP refused off loopback, and a bridge that refuses a client of another tree or without a
certificate."""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Any

import pytest

from actorstage import Actor, ActorSystem, ProcessOptions
from actorstage.exceptions import InvalidDefinitionError
from actorstage.transport._dial import dial
from actorstage.transport._server import BridgeServer
from actorstage.transport._tls import TreeTls
from tests.certificates import self_signed

pytestmark = pytest.mark.anyio
TLS = ProcessOptions(transport="tcp", tls=True)


class Echo(Actor):
    async def receive(self, message: Any) -> Any:
        return message


class Parent(Actor):
    """In a child process: asks a child of its own, over TCP with TLS too."""

    async def on_start(self) -> None:
        self.child = await self.context.spawn(Echo, name="grandchild", process=TLS)

    async def receive(self, message: Any) -> Any:
        address = self.context.system._bridges[("tcp", "127.0.0.1", True)].address
        return [await self.child.ask(message), address, os.getpid()]


async def test_a_child_and_its_child_talk_over_tcp_with_tls() -> None:
    async with ActorSystem() as system:
        child = await system.spawn(Parent, name="parent", process=TLS)
        answer, its_bridge, pid = await child.ask("hello")
        assert answer == "hello"
        ours = system._bridges[("tcp", "127.0.0.1", True)]
        assert ours.address.startswith("tls:127.0.0.1:")
        assert its_bridge.startswith("tls:127.0.0.1:") and its_bridge != ours.address
        assert pid != os.getpid()  # (its own bridge, in its own process)


async def test_plain_tcp_off_loopback_is_refused_unless_allowed() -> None:
    assert ProcessOptions(transport="tcp", host="10.1.2.3").use_tls  # on by default there
    assert not ProcessOptions(transport="tcp").use_tls  # loopback: plain, as before
    with pytest.raises(InvalidDefinitionError, match=r"plain TCP on '10\.1\.2\.3'"):
        ProcessOptions(transport="tcp", host="10.1.2.3", tls=False)
    allowed = ProcessOptions(transport="tcp", host="10.1.2.3", tls=False, allow_plain=True)
    assert not allowed.use_tls


async def _expecting(server: BridgeServer) -> Any:
    return server.expect(1 << 20)


async def test_a_tls_bridge_refuses_another_tree_and_a_client_without_a_certificate() -> None:
    tree = TreeTls.create("ours")
    server = BridgeServer("tcp", "127.0.0.1", 2.0, tls=tree)
    await server.start()
    try:
        assert server.address.startswith("tls:")
        expected = await _expecting(server)
        stranger = TreeTls.create("theirs")  # a certificate of another tree's CA
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            conn = await asyncio.wait_for(
                dial(server.address, expected.token, expected.secret, 1 << 20, stranger), 5)
            await asyncio.wait_for(conn.recv(), 5)
        host, port = server.address[4:].rsplit(":", 1)
        bare = ssl.create_default_context(cadata=tree.ca_cert.decode())  # no certificate
        bare.check_hostname = False
        bare.set_alpn_protocols(["h2"])
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port), ssl=bare), 5)
            writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed on us
            raise ConnectionError("closed")
        with pytest.raises((ConnectionError, OSError)):  # no TLS at all, to a TLS address
            await dial(server.address, expected.token, expected.secret, 1 << 20, None)
        assert not expected.arrived.done()
        member = tree.issue("/user/child")  # a member of the tree, with its secret
        conn = await asyncio.wait_for(
            dial(server.address, expected.token, expected.secret, 1 << 20, member), 5)
        arrived, _pid = await asyncio.wait_for(expected.arrived, 5)
        await conn.aclose()
        await arrived.aclose()
    finally:
        await server.aclose()


def _own_ca() -> tuple[bytes, bytes]:
    """A CA of the user's own PKI (RSA, a year), made apart from actorstage."""
    import datetime

    return self_signed("Example Corp actors CA", lifetime=datetime.timedelta(days=365),
                       rsa=True, path_length=0)


async def test_a_tree_runs_on_a_ca_it_is_given_and_a_wrong_one_is_refused() -> None:
    import datetime

    from cryptography import x509

    ca_cert, ca_key = _own_ca()
    tree = TreeTls.from_ca(ca_cert, ca_key.decode(), "ours")
    assert tree.ca_cert == ca_cert
    member = x509.load_pem_x509_certificate(tree.cert)
    assert member.issuer == x509.load_pem_x509_certificate(ca_cert).subject
    assert member.not_valid_after_utc <= datetime.datetime.now(datetime.UTC) + \
        datetime.timedelta(days=31)  # members' certificates stay short-lived
    async with ActorSystem(tls=tree) as system:
        parent = await system.spawn(Parent, name="parent", process=TLS)
        answer, address, pid = await parent.ask("through our CA")
        assert answer == "through our CA" and address.startswith("tls:") and pid != os.getpid()
        assert system._tls is tree

    with pytest.raises(InvalidDefinitionError, match="is not a CA's certificate"):
        TreeTls.from_ca(tree.cert, tree.key)  # a member's certificate is no CA
    _other_cert, other_key = _own_ca()
    with pytest.raises(InvalidDefinitionError, match="the key is not the certificate's key"):
        TreeTls.from_ca(ca_cert, other_key)
    with pytest.raises(InvalidDefinitionError, match="not a PEM certificate"):
        TreeTls.from_ca(b"not a certificate", ca_key)
    with pytest.raises(InvalidDefinitionError, match="tls must be a TreeTls"):
        ActorSystem(tls="ca.pem")  # type: ignore[arg-type]
