"""The synchronous client: a small pool of Unix-socket connections, one request line each way."""

from __future__ import annotations

import itertools
import queue
import socket
import threading
from typing import Iterable, Optional

from . import protocol
from .errors import ConnectionFailed
from .results import Decision


class _Connection:
    def __init__(self, path: str, timeout: Optional[float]):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as error:
            self.sock.close()
            raise ConnectionFailed(f"cannot connect to routerd at {path}: {error.strerror or error}") from error
        self.reader = self.sock.makefile("rb")

    def exchange(self, lines: list) -> list:
        """Sends every line, then reads as many replies: pipelined, in order."""
        try:
            self.sock.sendall(b"".join(lines))
            replies = []
            for _ in lines:
                line = self.reader.readline()
                if not line.endswith(b"\n"):
                    raise ConnectionFailed("routerd closed the connection before replying")
                replies.append(line)
            return replies
        except OSError as error:
            raise ConnectionFailed(f"routerd connection failed: {error}") from error

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()


class Client:
    """A thread-safe routerd client.

    Each call takes an idle connection from the pool (or opens one, up to ``pool_size`` kept
    idle), sends its request and reads the reply. :meth:`pipeline` sends many requests on one
    connection before reading their replies. Errors are the typed classes of ``routerd.errors``.
    """

    def __init__(self, socket_path: Optional[str] = None, *, timeout: Optional[float] = 30.0, pool_size: int = 4):
        self.socket_path = socket_path or protocol.default_socket()
        self.timeout = timeout
        self._idle: "queue.LifoQueue[_Connection]" = queue.LifoQueue(maxsize=pool_size)
        self._ids = itertools.count(1)
        self._id_lock = threading.Lock()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes the idle connections."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def _next_id(self) -> int:
        with self._id_lock:
            return next(self._ids)

    def _checkout(self) -> _Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return _Connection(self.socket_path, self.timeout)

    def _checkin(self, connection: _Connection) -> None:
        try:
            self._idle.put_nowait(connection)
        except queue.Full:
            connection.close()

    def pipeline(self, requests: Iterable[dict]) -> list:
        """Sends the requests on one connection, then returns each result, or the typed error
        instance for a request that failed (it is returned, not raised, so one bad request does
        not hide the others' results)."""
        requests = [dict(request, id=self._next_id()) for request in requests]
        connection = self._checkout()
        try:
            replies = connection.exchange([protocol.encode(request) for request in requests])
        except BaseException:
            connection.close()
            raise
        self._checkin(connection)
        results = []
        for request, line in zip(requests, replies):
            try:
                results.append(protocol.decode(line, request["id"]))
            except Exception as error:  # a typed RouterdError, returned in place
                results.append(error)
        return results

    def request(self, request: dict) -> dict:
        """Sends one request; returns its result or raises its typed error."""
        (result,) = self.pipeline([request])
        if isinstance(result, Exception):
            raise result
        return result

    def route(self, prompt: Optional[str] = None, *, router: Optional[str] = None, messages=None, threshold=None, lambda_=None,
              cheapest_within=None, session: Optional[str] = None, model: Optional[str] = None) -> Decision:
        """Which model should answer: give ``prompt`` or OpenAI-style ``messages`` (the last user turn is routed)."""
        return Decision.from_result(
            self.request(protocol.route_request(prompt, router, messages, threshold, lambda_, cheapest_within, session, model)))

    def score(self, prompts: Iterable[str], *, router: str) -> list:
        """P(strong model wins) for each prompt, without deciding."""
        return self.request({"op": "score", "router": router, "prompts": list(prompts)})["scores"]

    def feedback(self, decision_id: Optional[str] = None, *, model: str, outcome: Optional[str] = None, against: Optional[str] = None,
                 quality: Optional[float] = None, router: Optional[str] = None, prompt: Optional[str] = None) -> dict:
        """Reports how ``model`` did: ``outcome`` (win, loss, tie) ``against`` another model, or
        ``outcome="failed"`` when its call failed (an error, a timeout, a refusal), or a
        ``quality`` in [0, 1]. Name the decision, or the ``router`` and ``prompt``. Returns once
        routerd has the row on disk."""
        return self.request(protocol.feedback_request(decision_id, model, outcome, against, quality, router, prompt))

    def learn_status(self, router: Optional[str] = None) -> list:
        request = {"op": "learn"}
        if router is not None:
            request["router"] = router
        return self.request(request)["routers"]

    def stats(self) -> dict:
        return self.request({"op": "stats"})

    def health(self) -> dict:
        return self.request({"op": "health"})

    def routers(self) -> list:
        return self.request({"op": "routers"})["routers"]
