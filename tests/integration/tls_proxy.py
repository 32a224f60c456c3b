"""A TLS front for the dev Temporal server, which has no TLS options of its own.

``temporal server start-dev`` cannot serve TLS, so this proxy terminates TLS (HTTP/2 by
ALPN, optionally requiring a client certificate of the test CA: mutual TLS) with a
certificate the test made, and passes the decrypted gRPC stream to the dev server's
plaintext port. The client side is the real one: temporalio's core makes the TLS
handshake, verifies the chain and the name, and presents its certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TlsProxy:
    address: str
    server: asyncio.Server
    failures: list[str] = field(default_factory=list)

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def start_tls_proxy(
    target: str, cert: Path, key: Path, client_ca: Path | None = None
) -> TlsProxy:
    """Listen with TLS on a free port of 127.0.0.1; forward to ``target`` in plaintext."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    host, _, port = target.rpartition(":")
    failures: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            failures.append(repr(exc))
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except asyncio.CancelledError:
            # The proxy is closing: end quietly (a cancelled connection task is
            # otherwise logged as an error by asyncio's stream protocol).
            up_writer.close()
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    bound = server.sockets[0].getsockname()[1]
    return TlsProxy(f"127.0.0.1:{bound}", server, failures)
