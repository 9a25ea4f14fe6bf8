"""Fingerprints: a pack's YAML files read once, with the content hash of each.

A loaded pack keeps the hash of its ``pack.yaml`` (folded with its rule files and its
requirements' digest) and of each action file (``source_hash``).
A reload whose files hash the same as the rows it loaded before, and whose entry points still
pass their check, parses none of them. The hash covers a file's bytes and
:data:`LOADER_VERSION`, so a loader that reads files differently parses every pack once more.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from attune.environments.requirements import REQUIREMENTS_FILE, read_requirements
from attune.errors import DocumentError

MAX_DOCUMENT_BYTES = 1024 * 1024
"""Largest YAML file read; a bigger one is refused without reading it."""

_READ_CHUNK_BYTES = 64 * 1024

LOADER_VERSION = 1
"""Bump whenever what the loader makes of a file changes: a key, a check, a column written."""

ACTION_SUFFIXES = (".yaml", ".yml")
"""The files of a pack's ``actions/`` that are action files."""


def content_hash(data: bytes) -> str:
    """The hash stored for a file holding ``data`` (hex SHA-256, loader version included)."""
    digest = hashlib.sha256(f"attune-packs/{LOADER_VERSION}\0".encode())
    digest.update(data)
    return digest.hexdigest()


def read_bytes(path: Path) -> bytes:
    """The bytes of regular file ``path``, at most MAX_DOCUMENT_BYTES, read without blocking;
    raises :class:`DocumentError` naming the file."""
    source = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DocumentError(source, "missing") from None
    except OSError as error:
        raise DocumentError(source, f"cannot be read: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DocumentError(source, "not a regular file")
        if info.st_size > MAX_DOCUMENT_BYTES:
            problem = f"{info.st_size} bytes, over the {MAX_DOCUMENT_BYTES} byte limit"
            raise DocumentError(source, problem)
        # The size fstat saw, and one byte more: a shorter read of a regular file is its end
        # (one read per file on a reload of a thousand). Then small reads: a file that grew
        # meanwhile is still bounded, and no read allocates a whole limit's worth of buffer.
        request = info.st_size + 1
        first = os.read(fd, request)
        if len(first) < request:
            return first
        chunks: list[bytes] = []
        size = 0
        chunk = first
        while chunk:
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_DOCUMENT_BYTES:
                raise DocumentError(source, f"over the {MAX_DOCUMENT_BYTES} byte limit")
            chunk = os.read(fd, min(_READ_CHUNK_BYTES, MAX_DOCUMENT_BYTES + 1 - size))
        return b"".join(chunks)
    finally:
        os.close(fd)


def action_file_names(actions_dir: Path) -> list[str]:
    """The action files of ``actions_dir``, sorted; raises OSError when it is no directory."""
    return sorted(name for name in os.listdir(actions_dir) if name.endswith(ACTION_SUFFIXES))


@dataclass(frozen=True)
class PackFiles:
    """The YAML files of one pack folder as read once: their bytes and hashes, by path."""

    pack_dir: Path
    contents: Mapping[Path, bytes]
    hashes: Mapping[Path, str]
    complete: bool
    """True when ``pack.yaml`` and every action file were listed and read without a problem."""
    extras: str = ""
    """A digest of the pack's rule files and requirements (empty when it has neither)."""

    @property
    def header_hash(self) -> str | None:
        """The hash stored on the pack row: ``pack.yaml``'s, folded with :attr:`extras` (None
        when ``pack.yaml`` could not be read)."""
        header = self.hashes.get(self.pack_dir / "pack.yaml")
        if header is None or not self.extras:
            return header
        return content_hash(f"{header}\0{self.extras}".encode())

    @property
    def action_hashes(self) -> list[str]:
        """The hashes of the action files, sorted."""
        header = self.pack_dir / "pack.yaml"
        return sorted(digest for path, digest in self.hashes.items() if path != header)


def read_files(pack_dir: Path) -> PackFiles:
    """Read ``pack_dir``'s ``pack.yaml`` and action files (never raises: a file that cannot be
    read leaves the result incomplete, for :func:`~attune.packs.reader.read_pack` to report)."""
    paths = [pack_dir / "pack.yaml"]
    complete = True
    actions_dir = pack_dir / "actions"
    try:
        paths += [actions_dir / name for name in action_file_names(actions_dir)]
    except FileNotFoundError:
        pass  # a pack without actions
    except OSError:
        complete = False
    contents: dict[Path, bytes] = {}
    hashes: dict[Path, str] = {}
    for path in paths:
        try:
            contents[path] = data = read_bytes(path)
        except DocumentError:
            complete = False
            continue
        hashes[path] = content_hash(data)
    extras = _extras(pack_dir)
    return PackFiles(pack_dir, contents, hashes, complete and extras is not None, extras or "")


def _extras(pack_dir: Path) -> str | None:
    """A digest of ``rules/*.yaml`` and ``actions/workflows/*.yaml`` (names and bytes) and of
    the requirements ("" for none of them);
    None when one cannot be read, so that the pack is parsed and the problem reported."""
    digest = hashlib.sha256()
    rules_dir = pack_dir / "rules"
    try:
        names = sorted(name for name in os.listdir(rules_dir) if name.endswith(ACTION_SUFFIXES))
    except FileNotFoundError:
        names = []
    except OSError:
        return None
    for name in names:
        try:
            digest.update(f"rule {name}\0".encode() + read_bytes(rules_dir / name) + b"\0")
        except DocumentError:
            return None
    workflows_dir = pack_dir / "actions" / "workflows"
    try:
        flows = sorted(name for name in os.listdir(workflows_dir) if name.endswith(ACTION_SUFFIXES))
    except FileNotFoundError:
        flows = []
    except OSError:
        return None
    for name in flows:
        try:
            digest.update(f"workflow {name}\0".encode() + read_bytes(workflows_dir / name) + b"\0")
        except DocumentError:
            return None
    if os.path.lexists(pack_dir / REQUIREMENTS_FILE):
        requirements, problems = read_requirements(pack_dir)
        if requirements is None or problems:
            return None
        digest.update(f"requirements {requirements.digest}".encode())
    elif not names and not flows:
        return ""
    return digest.hexdigest()
