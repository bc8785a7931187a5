"""Wakes SSE streams when their operation records something.

Supervisor threads call `notify`; stream coroutines `wait`. Streams also poll the registry on
a short timeout, so events written by another replica arrive too, only a little later.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict


class OperationNotifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, operation_id: str) -> None:
        """Thread-safe."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            waiters = list(self._waiters.get(operation_id, ()))
        for waiter in waiters:
            loop.call_soon_threadsafe(waiter.set)

    async def wait(self, operation_id: str, timeout: float) -> None:
        waiter = asyncio.Event()
        with self._lock:
            self._waiters[operation_id].add(waiter)
        try:
            await asyncio.wait_for(waiter.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters[operation_id].discard(waiter)
                if not self._waiters[operation_id]:
                    del self._waiters[operation_id]
