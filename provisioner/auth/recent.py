"""The keys this process authenticated in the last half second, so that a burst of requests
with one key costs one registry look-up, not one each.

Bounded staleness, not a cache of trust: an entry lives `TTL_S` (0.5 s) at most, so a key
revoked through another replica is refused within that time, and a revocation through this
process forgets every entry at once. Only successes are kept; an unknown key always reaches
the registry. Concurrent requests with a key that is not remembered share one look-up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Final

from provisioner.auth.service import Principal

TTL_S: Final = 0.5
_MAX_ENTRIES: Final = 1024


class RecentKeys:
    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        self._looking_up: dict[str, asyncio.Task[Principal]] = {}

    async def principal(
        self, key_hash: str, look_up: Callable[[], Awaitable[Principal]]
    ) -> Principal:
        """The remembered principal of `key_hash`, or the one `look_up` finds (shared by every
        request that asks meanwhile, remembered if found). Called on the event loop."""
        remembered = self.get(key_hash)
        if remembered is not None:
            return remembered
        task = self._looking_up.get(key_hash)
        if task is None:
            checked_at = time.monotonic()

            async def run() -> Principal:
                try:
                    found = await look_up()
                finally:
                    del self._looking_up[key_hash]
                self.remember(key_hash, found, checked_at)
                return found

            task = asyncio.ensure_future(run())
            self._looking_up[key_hash] = task
        # Shielded: a client that goes away does not cancel the others' look-up.
        return await asyncio.shield(task)

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        checked_at, principal = entry
        if time.monotonic() - checked_at >= self.ttl_s:
            return None
        return principal

    def remember(self, key_hash: str, principal: Principal, checked_at: float) -> None:
        """`checked_at`: the monotonic time before the registry was asked, so the entry
        expires `ttl_s` after the look-up began, however long it took."""
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()  # rare (many distinct keys at once); cheap to refill
            self._entries[key_hash] = (checked_at, principal)

    def forget_all(self) -> None:
        with self._lock:
            self._entries.clear()
