"""Concurrent REST clients: each one GETs its endpoints back to back (no think time) until stopped,
recording every request's latency. Failed or non-200 requests are counted, not timed.
"""

from __future__ import annotations

import http.client
import threading
import time

ENDPOINTS = ("/api/v2/builds", "/api/v2/builders")


class RestLoad:
    def __init__(self, port: int, clients: int = 20, endpoints: tuple[str, ...] = ENDPOINTS):
        self.port = port
        self.endpoints = endpoints
        self.latencies: dict[str, list[float]] = {e: [] for e in endpoints}
        self.errors: dict[str, int] = dict.fromkeys(endpoints, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(index,), name=f"rest-{index}", daemon=True)
            for index in range(clients)
        ]
        self.started: float | None = None
        self.stopped: float | None = None

    def _client(self, index: int) -> None:
        turn = index  # clients start on different endpoints, so both are always in flight
        while not self._stop.is_set():
            endpoint = self.endpoints[turn % len(self.endpoints)]
            turn += 1
            began = time.perf_counter()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                connection.request("GET", endpoint)
                response = connection.getresponse()
                body = response.read()
                took = time.perf_counter() - began
                ok = response.status == 200 and body.endswith(b"}")
                connection.close()
            except (OSError, http.client.HTTPException):
                ok, took = False, 0.0
            with self._lock:
                if ok:
                    self.latencies[endpoint].append(took)
                else:
                    self.errors[endpoint] += 1

    def start(self) -> RestLoad:
        self.started = time.time()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)
        self.stopped = time.time()

    @property
    def seconds(self) -> float:
        """How long the load ran."""
        assert self.started is not None and self.stopped is not None, "start() and stop() the load first"
        return self.stopped - self.started
