"""SecretBox: encrypts the secret parameter values of an execution at rest (Fernet)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from attune.errors import SecretKeyError
from attune.settings import Settings
from attune.store.db import database_url

KEY_FILE_NAME = "attune.key"
"""The key file created beside an embedded SQLite database when ATTUNE_SECRET_KEY is unset."""


class SecretBox:
    """Encrypts and decrypts a mapping of secret values with one Fernet key."""

    def __init__(self, key: bytes | str) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise SecretKeyError(
                "ATTUNE_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from None

    @classmethod
    def for_settings(cls, settings: Settings) -> SecretBox:
        """The box for ``ATTUNE_SECRET_KEY``, else the SQLite database's key file.

        Raises :class:`SecretKeyError` for any other database without a key: a key made up
        on one host would leave every other worker unable to decrypt.
        """
        if settings.secret_key is not None:
            return cls(settings.secret_key)
        url = database_url(settings.database_url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            raise SecretKeyError(
                "this action has secret parameters and ATTUNE_SECRET_KEY is not set: "
                "set it to the same Fernet key on every caller and worker"
            )
        return cls(_key_file(Path(url.database).parent / KEY_FILE_NAME))

    def encrypt(self, values: Mapping[str, Any]) -> str:
        """One token holding every value of ``values``."""
        return self._fernet.encrypt(json.dumps(dict(values)).encode()).decode()

    def decrypt(self, token: str) -> dict[str, Any]:
        """The values sealed in ``token``."""
        try:
            values: dict[str, Any] = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise SecretKeyError(
                "the secret parameters cannot be decrypted with this key: "
                "callers and workers must share ATTUNE_SECRET_KEY"
            ) from None
        return values


def _key_file(path: Path) -> bytes:
    """Read the key at ``path``; create it (mode 0600) first when missing, race-free."""
    if not path.exists():
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
        try:
            os.link(staging, path)  # atomic: the first process to link wins
        except FileExistsError:
            pass
        finally:
            staging.unlink()
    return path.read_bytes().strip()
