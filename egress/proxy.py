"""One attempt's way out of its sandbox: two Unix sockets, served on a thread of the worker.

- `proxy.sock`, the sandbox's HTTP(S)_PROXY: `CONNECT host:port` tunnels (HTTPS) and plain
  HTTP requests in absolute form, each decided by the agent's egress policy, resolved here,
  and connected to the very address that was checked (policy.check_address). Every connection
  allowed or refused is reported (`Door.connections`), for the attempt's `egress` events.
- `gateway.sock`: HTTP to AgentHub's model gateway and nothing else (paths under /gateway/).

The sandbox has no network of its own; jobs/sandbox binds these sockets into it and
egress/bridge.py, inside, listens on 127.0.0.1 and forwards to them. Each request is the last
on its connection (`Connection: close` upstream), so a request line is read and decided for
every request the sandbox sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import queue
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from egress.policy import Decision, Policy

HEAD_LIMIT = 64 * 1024
CONNECT_TIMEOUT = 15.0
GATEWAY_PREFIX = "/gateway/"
DROPPED_HEADERS = {b"connection", b"proxy-connection", b"proxy-authorization", b"keep-alive"}


@dataclass(frozen=True)
class Connection:
    """One connection the sandbox asked for, as reported."""

    host: str
    port: int
    allowed: bool
    method: str = ""  # plain HTTP; "" for a CONNECT tunnel
    reason: str = ""


@dataclass
class _Head:
    method: str
    target: str
    version: str
    headers: list[tuple[bytes, bytes]]

    def encode(self, target: str, host: str) -> bytes:
        lines = [f"{self.method} {target} {self.version}".encode()]
        lines += [
            name + b": " + value
            for name, value in self.headers
            if name.lower() not in DROPPED_HEADERS and name.lower() != b"host"
        ]
        lines += [b"Host: " + host.encode(), b"Connection: close"]
        return b"\r\n".join(lines) + b"\r\n\r\n"


class Door:
    """Serves `proxy.sock` and `gateway.sock` in `directory` until stop()."""

    def __init__(self, directory: Path, policy: Policy, gateway: tuple[str, int]) -> None:
        self.directory = directory
        self.policy = policy
        self.gateway = gateway
        self.proxy_socket = directory / "proxy.sock"
        self.gateway_socket = directory / "gateway.sock"
        self.connections: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="egress")
        self._servers: list[asyncio.AbstractServer] = []

    def start(self) -> Door:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()
        for path in (self.proxy_socket, self.gateway_socket):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the directory, once empty (open_door made it)
            self.directory.rmdir()

    def reported(self) -> list[Connection]:
        """The connections reported since the last call."""
        found = []
        while True:
            try:
                found.append(self.connections.get_nowait())
            except queue.Empty:
                return found

    async def _serve(self) -> None:
        for path, handler in (
            (self.proxy_socket, self._proxy),
            (self.gateway_socket, self._to_gateway),
        ):
            path.unlink(missing_ok=True)
            self._servers.append(await asyncio.start_unix_server(handler, path=str(path)))
            # The sandbox's uid is "others" here. The directory holding the sockets is private
            # (0700): only the bind mounts into the sandbox reach them.
            os.chmod(path, 0o666)  # noqa: S103

    # --- the proxy --------------------------------------------------------------------------

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.closing(writer):
            head = await _read_head(reader)
            if head is None:
                return
            if head.method == "CONNECT":
                host, port = _split_authority(head.target, 443)
                method = ""
            else:
                parts = urlsplit(head.target)
                if parts.scheme != "http" or not parts.hostname:
                    await _answer(writer, 400, "send absolute http:// URLs or CONNECT")
                    return
                host, port, method = parts.hostname, parts.port or 80, head.method
            decision = self.policy.decide(host, port, method or None)
            upstream = None
            if decision.allowed:
                upstream, decision = await self._open(host, port)
            self.connections.put(Connection(host, port, decision.allowed, method, decision.reason))
            if upstream is None:
                await _answer(writer, 403, f"AgentHub egress refused: {decision.reason}")
                return
            up_reader, up_writer = upstream
            with contextlib.closing(up_writer):
                if method:
                    parts = urlsplit(head.target)
                    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                    up_writer.write(head.encode(path, parts.netloc))
                else:
                    writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await _splice(reader, writer, up_reader, up_writer)

    async def _open(
        self, host: str, port: int
    ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, Decision]:
        """Resolve, check the address, and connect to exactly that address."""
        try:
            found = await self._loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            return None, Decision(False, f"{host} does not resolve ({exc})")
        address = ipaddress.ip_address(found[0][4][0])
        checked = self.policy.check_address(host, address)
        if not checked.allowed:
            return None, checked
        try:
            opened = await asyncio.wait_for(
                asyncio.open_connection(str(address), port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            return None, Decision(False, f"could not connect to {host}:{port}: {exc}")
        return opened, Decision(True)

    # --- the gateway ------------------------------------------------------------------------

    async def _to_gateway(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.closing(writer):
            head = await _read_head(reader)
            if head is None:
                return
            if not head.target.startswith(GATEWAY_PREFIX) or ".." in head.target:
                await _answer(writer, 403, f"only {GATEWAY_PREFIX} is served here")
                return
            host, port = self.gateway
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                await _answer(writer, 502, f"AgentHub's gateway cannot be reached: {exc}")
                return
            with contextlib.closing(up_writer):
                up_writer.write(head.encode(head.target, f"{host}:{port}"))
                await _splice(reader, writer, up_reader, up_writer)


async def _read_head(reader: asyncio.StreamReader) -> _Head | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    if len(raw) > HEAD_LIMIT:
        return None
    lines = raw[:-4].split(b"\r\n")
    words = lines[0].decode("latin-1").split()
    if len(words) != 3:
        return None
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip(), value.strip()))
    # What follows the head (a body) stays in the reader, for the splice.
    return _Head(words[0].upper(), words[1], words[2], headers)


def _split_authority(target: str, default_port: int) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return target.strip("[]"), default_port
    return host.strip("[]"), int(port)


async def _answer(writer: asyncio.StreamWriter, status: int, detail: str) -> None:
    body = (detail + "\n").encode()
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until the upstream is done answering."""

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()

    upload = asyncio.ensure_future(pipe(reader, up_writer))
    try:
        await pipe(up_reader, writer)
    finally:
        upload.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upload
