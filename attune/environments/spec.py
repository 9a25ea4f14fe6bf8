"""EnvironmentSpec: what an environment is built from, and the key that names it."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from attune.environments.installer import Installer, public_url
from attune.environments.interpreter import Interpreter
from attune.environments.requirements import REQUIREMENTS_FILE, Requirements
from attune.settings import EnvSettings

LAYOUT_VERSION = 1
"""Bumped when the way attune lays out an environment changes (a new key for every pack)."""

KEY_DIGITS = 16
"""Hex digits of the key in an environment's directory name and wherever it is shown."""


@dataclass(frozen=True)
class EnvironmentSpec:
    """One pack's environment on this host: requirements, interpreter, installer, index."""

    pack: str
    pack_dir: Path
    requirements: Requirements
    interpreter: Interpreter
    installer: Installer
    envs: EnvSettings

    @functools.cached_property
    def inputs(self) -> dict[str, object]:
        """Everything the key is a hash of (no credentials), as stored in the ready marker."""
        return {
            "layout": LAYOUT_VERSION,
            "requirements": self.requirements.digest,
            "interpreter": self.interpreter.identity(),
            "installer": {"name": self.installer.name, "version": self.installer.version},
            "index": {
                "offline": self.envs.offline,
                "find_links": [public_url(link) for link in self.envs.find_links],
                "index_url": public_url(self.envs.index_url) if self.envs.index_url else None,
            },
        }

    @functools.cached_property
    def key(self) -> str:
        """The sha256 (64 hex digits) of :attr:`inputs` as canonical JSON."""
        canonical = json.dumps(self.inputs, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def short_key(self) -> str:
        """The key's first :data:`KEY_DIGITS` hex digits."""
        return self.key[:KEY_DIGITS]

    @property
    def path(self) -> Path:
        """``ATTUNE_ENVS_DIR/<pack>/<short key>``: where the environment lives when ready."""
        return self.envs.envs_dir.absolute() / self.pack / self.short_key

    @property
    def requirements_file(self) -> Path:
        """The pack's top requirements file (pip follows its ``-r``/``-c`` lines)."""
        return self.pack_dir / REQUIREMENTS_FILE
