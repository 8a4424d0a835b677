"""The part of the Postgres wire protocol a fault proxy takes part in: the TLS negotiation that
opens a connection (PostgreSQL docs, "Message Flow: SSL Session Encryption"). The client sends an
8-byte SSLRequest (or first a GSSENCRequest), the server answers one byte, ``S`` or ``N``, and the
TLS handshake follows on the same connection.

A proxy in front of a Postgres that serves TLS answers the client itself and opens its own
verified TLS connection upstream: a trusted intermediary, so that its toxics see the protocol in
clear (a command tag, a statement) while every client still connects with ``verify-full``. It
presents the server's own certificate (the stack's authority issues one per set of names): SCRAM's
channel binding, libpq's default over TLS, hashes the certificate the client saw into the login,
and the server compares it with its own, so any other certificate would fail every login. That is
the binding doing its job against an intermediary; this one holds the server's key."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.certificates import Authority

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
GSSENC_REQUEST = struct.pack("!ii", 8, 80877104)


@dataclass(frozen=True)
class PostgresTls:
    """TLS on both sides of a proxy: ``server`` presents the proxy's certificate to the client,
    ``client`` verifies the upstream server as ``upstream_name``."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    upstream_name: str


def proxy_tls(authority: Authority, names: tuple[str, ...], upstream_name: str) -> PostgresTls:
    """Contexts for a proxy in front of a server that ``authority`` issued its certificate for
    ``names`` (which hold the proxy's own address and ``upstream_name``): the proxy presents that
    same certificate."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert, key = authority.issue(names)
    with tempfile.TemporaryDirectory(prefix="harness-proxy-tls-") as where:  # ssl loads keys from files only
        (Path(where) / "cert.pem").write_bytes(cert)
        (Path(where) / "key.pem").write_bytes(key)
        server.load_cert_chain(Path(where) / "cert.pem", Path(where) / "key.pem")
    client = ssl.create_default_context(cadata=authority.pem.decode())
    return PostgresTls(server, client, upstream_name)


async def _receive(loop: asyncio.AbstractEventLoop, conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(conn, size - len(data))
        if not chunk:
            raise ConnectionError("the client closed the connection during the negotiation")
        data += chunk
    return data


async def accept(
    conn: socket.socket, tls: PostgresTls
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes | None]:
    """The client's side of a new connection: GSSAPI refused (``N``), TLS accepted (``S``) with
    the proxy's certificate. Returns its streams and ``None`` when it is on TLS, or the bytes it
    sent in clear first (to be relayed upstream as they are; the server then says whether it
    admits a plain connection). Raises when the client ends it or fails its handshake."""
    loop = asyncio.get_running_loop()
    first = await _receive(loop, conn, 8)
    if first == GSSENC_REQUEST:
        await loop.sock_sendall(conn, b"N")
        first = await _receive(loop, conn, 8)
    if first != SSL_REQUEST:
        reader, writer = await asyncio.open_connection(sock=conn)
        return reader, writer, first
    await loop.sock_sendall(conn, b"S")
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    # the server side of the handshake, on the accepted socket (asyncio's public way to do it)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock=conn, ssl=tls.server)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop), None


async def upstream(
    tls: PostgresTls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, prelude: bytes | None
) -> None:
    """The proxy's own connection to the server: TLS asked for and the server's certificate
    verified as ``tls.upstream_name``, or, for a client that started in clear, its first bytes."""
    if prelude is not None:
        writer.write(prelude)
        return
    writer.write(SSL_REQUEST)
    await writer.drain()
    if await reader.readexactly(1) != b"S":
        raise ConnectionError("the upstream refused TLS")
    await writer.start_tls(tls.client, server_hostname=tls.upstream_name)
