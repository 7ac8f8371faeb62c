"""A loopback TCP proxy for fault tests: a real outage (stop, later start again on the same port) or a
connection cut at a chosen point of a real conversation (after the client sends some command)."""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

from tests.conftest import free_port


@dataclass
class _Trigger:
    pattern: bytes
    nth: int
    reply_bytes: int | None  # None: cut before the command reaches the server
    outage: bool
    seen: int = 0


@dataclass
class _Pair:
    client: socket.socket
    server: socket.socket
    reply_budget: int | None = None  # server->client bytes still let through before the cut
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream`, one pair of threads per connection.

    `stop()` is an outage: the port refuses connections and every open connection is cut (both sides,
    so the server also sees its client vanish). `start()` listens on the same port again.
    `cut_on(pattern, ...)` arms a one-shot cut for the nth client chunk that contains `pattern`.
    """

    def __init__(self, upstream: tuple[str, int], port: int | None = None) -> None:
        self.upstream = upstream
        self.port = port or free_port()
        self.cuts = 0  # how many connections a trigger or stop() has cut
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._pairs: list[_Pair] = []
        self._trigger: _Trigger | None = None

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the proxy is listening."""
        return self._listener is not None

    def start(self) -> None:
        """Listen on the proxy's port (the same one after a stop)."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        self._accepting = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True)
        self._accepting.start()

    def stop(self) -> None:
        """An outage: stop listening and cut every open connection."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            listener.close()
            if self._accepting is not None and self._accepting is not threading.current_thread():
                self._accepting.join(timeout=5)
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            if not pair.closed:
                self.cuts += 1
            pair.close()

    def cut_on(
        self, pattern: bytes, nth: int = 1, reply_bytes: int | None = None, outage: bool = False
    ) -> None:
        """Cut the connection whose client sends `pattern` for the nth time (counted across connections).

        With `reply_bytes` None the chunk is never forwarded; otherwise it is, and the cut comes after
        that many bytes of the server's answer. With `outage` (only before forwarding), the whole proxy
        stops at that moment.
        """
        assert len(pattern) > 1 and not (outage and reply_bytes is not None)
        self._trigger = _Trigger(pattern, nth, reply_bytes, outage)

    @property
    def armed(self) -> bool:
        """Whether a cut_on trigger has not fired yet."""
        return self._trigger is not None

    # --- internals ------------------------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _addr = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = _Pair(client, server)
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    pair.close()
                    continue
                self._pairs.append(pair)
            threading.Thread(target=self._client_to_server, args=(pair,), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(pair,), daemon=True).start()

    def _matches(self, window: bytes, tail_len: int) -> int:
        trigger = self._trigger
        if trigger is None:
            return 0
        # occurrences that end in the new data (the tail alone is too short to hold one)
        return window.count(trigger.pattern) - window[:tail_len].count(trigger.pattern)

    def _client_to_server(self, pair: _Pair) -> None:
        tail = b""
        try:
            while True:
                data = pair.client.recv(65536)
                if not data:
                    break
                trigger = self._trigger
                if trigger is not None:
                    window = tail + data
                    found = self._matches(window, len(tail))
                    tail = window[-(len(trigger.pattern) - 1) :]
                    if found and trigger.seen < trigger.nth <= trigger.seen + found:
                        self._trigger = None
                        if trigger.reply_bytes is None:
                            self._cut(pair, trigger.outage)
                            return
                        pair.reply_budget = trigger.reply_bytes  # set before the command goes on
                    trigger.seen += found
                pair.server.sendall(data)
        except OSError:
            pass
        finally:
            pair.close()

    def _server_to_client(self, pair: _Pair) -> None:
        try:
            while True:
                data = pair.server.recv(65536)
                if not data:
                    break
                budget = pair.reply_budget
                if budget is not None and budget <= len(data):
                    pair.client.sendall(data[:budget])
                    self._cut(pair, outage=False)
                    return
                if budget is not None:
                    pair.reply_budget = budget - len(data)
                pair.client.sendall(data)
        except OSError:
            pass
        finally:
            pair.close()

    def _cut(self, pair: _Pair, outage: bool) -> None:
        if outage:
            self.stop()
            return
        self.cuts += 1
        pair.close()
