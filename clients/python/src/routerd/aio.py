"""The asyncio client: requests pipelined over a few connections, replies matched in order."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Iterable, Optional

from . import protocol
from .errors import ConnectionFailed
from .results import Decision


class _AsyncConnection:
    """One connection: writes go out as they come; a reader task hands replies to waiting
    requests in order (routerd answers a connection's requests in the order it read them)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.waiting: deque = deque()
        self.broken: Optional[BaseException] = None
        self.task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, path: str) -> "_AsyncConnection":
        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=64 * 1024 * 1024)
        except OSError as error:
            raise ConnectionFailed(f"cannot connect to routerd at {path}: {error.strerror or error}") from error
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while True:
                line = await self.reader.readline()
                if not line.endswith(b"\n"):
                    raise ConnectionFailed("routerd closed the connection")
                self.waiting.popleft().set_result(line)
        except BaseException as error:  # noqa: BLE001 — every waiter must learn why
            self.broken = error if isinstance(error, ConnectionFailed) else ConnectionFailed(f"routerd connection failed: {error}")
            while self.waiting:
                future = self.waiting.popleft()
                if not future.done():
                    future.set_exception(self.broken)

    async def send(self, line: bytes) -> bytes:
        if self.broken is not None:
            raise self.broken
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        self.writer.write(line)
        await self.writer.drain()
        return await future

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


class AsyncClient:
    """An asyncio routerd client: up to ``pool_size`` connections, used in turn, each carrying
    many requests at once. Use ``async with AsyncClient(...) as client``, or call :meth:`close`."""

    def __init__(self, socket_path: Optional[str] = None, *, pool_size: int = 2, timeout: Optional[float] = 30.0):
        self.socket_path = socket_path or protocol.default_socket()
        self.pool_size = max(1, pool_size)
        self.timeout = timeout
        self._connections: list = []
        self._turn = itertools.count()
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        connections, self._connections = self._connections, []
        for connection in connections:
            await connection.close()

    async def _connection(self) -> _AsyncConnection:
        async with self._lock:
            self._connections = [c for c in self._connections if c.broken is None]
            if len(self._connections) < self.pool_size:
                self._connections.append(await _AsyncConnection.open(self.socket_path))
            return self._connections[next(self._turn) % len(self._connections)]

    async def request(self, request: dict) -> dict:
        request = dict(request, id=next(self._ids))
        connection = await self._connection()
        line = await asyncio.wait_for(connection.send(protocol.encode(request)), self.timeout)
        return protocol.decode(line, request["id"])

    async def route(self, prompt: Optional[str] = None, *, router: Optional[str] = None, messages=None, threshold=None,
                    lambda_=None, cheapest_within=None, session: Optional[str] = None, model: Optional[str] = None) -> Decision:
        return Decision.from_result(
            await self.request(protocol.route_request(prompt, router, messages, threshold, lambda_, cheapest_within, session, model)))

    async def score(self, prompts: Iterable[str], *, router: str) -> list:
        return (await self.request({"op": "score", "router": router, "prompts": list(prompts)}))["scores"]

    async def feedback(self, decision_id: Optional[str] = None, *, model: str, outcome: Optional[str] = None,
                       against: Optional[str] = None, quality: Optional[float] = None, router: Optional[str] = None,
                       prompt: Optional[str] = None) -> dict:
        return await self.request(protocol.feedback_request(decision_id, model, outcome, against, quality, router, prompt))

    async def learn_status(self, router: Optional[str] = None) -> list:
        request = {"op": "learn"}
        if router is not None:
            request["router"] = router
        return (await self.request(request))["routers"]

    async def stats(self) -> dict:
        return await self.request({"op": "stats"})

    async def health(self) -> dict:
        return await self.request({"op": "health"})
