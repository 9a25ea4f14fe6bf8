"""What this process verified recently: API keys and browser sessions, trusted for a second.

Checking a key or a session is an indexed read per request; trusting the answer for
:data:`CREDENTIAL_CACHE_S` makes it one read per credential and second instead. That is
also the bound on revocation: a key revoked (or a session ended) elsewhere is refused by
this server at most :data:`CREDENTIAL_CACHE_S` later. Only credentials that were found
usable are kept (an unknown token asks the database every time), at most
:data:`MAX_REMEMBERED` of them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Generic, TypeVar

CREDENTIAL_CACHE_S = 1.0
"""How long a verified key or session is trusted without asking the database again."""
MAX_REMEMBERED = 4096
"""The most credentials remembered at once; past that the memory starts over."""

_V = TypeVar("_V")


class CredentialCache(Generic[_V]):
    """Verified credentials by the SHA-256 of their secret, each until its deadline.

    ``clock`` is monotonic seconds (injected so tests can move past the bound).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._verified: dict[str, tuple[float, _V]] = {}

    def remembered(self, secret: str) -> _V | None:
        """What ``secret`` was verified as, if that was less than the bound ago."""
        key = _key_of(secret)
        found = self._verified.get(key)
        if found is None:
            return None
        deadline, value = found
        if self.clock() >= deadline:
            self._verified.pop(key, None)
            return None
        return value

    def verified(self, secret: str, verify: Callable[[], _V | None]) -> _V | None:
        """What ``secret`` is: as remembered, else as ``verify`` finds it (then remembered
        if it is usable)."""
        value = self.remembered(secret)
        if value is None:
            value = verify()
            if value is not None:
                if len(self._verified) >= MAX_REMEMBERED:
                    self._verified.clear()
                self._verified[_key_of(secret)] = (self.clock() + CREDENTIAL_CACHE_S, value)
        return value

    def forget(self, secret: str) -> None:
        """Forget ``secret`` at once (its session ended in this process)."""
        self._verified.pop(_key_of(secret), None)


def _key_of(secret: str) -> str:
    """What a secret is remembered by: never the secret itself."""
    return hashlib.sha256(secret.encode()).hexdigest()
