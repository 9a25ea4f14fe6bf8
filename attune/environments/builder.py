"""Builder: make a pack's environment exist at its path, once, whatever runs concurrently.

One ``flock`` per key serializes the builders of a host (pool processes and workers alike);
the builder works in a temporary sibling directory, smoke-tests the interpreter, checks the
installed dependencies, writes the ready marker and renames the directory into place, so an
environment is either complete or absent. Nothing is ever updated in place: other inputs make
another key. A process using an environment holds a shared lock on its marker, so pruning never
removes one in use.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from attune.environments.spec import EnvironmentSpec
from attune.errors import PackEnvironmentError
from attune.runtimes.process import Spawn, Stop, run_process

READY_MARKER = ".attune-ready"
"""The file whose presence makes an environment directory ready (JSON: inputs, installer…)."""

LOCK_POLL_S = 0.05
"""How often a waiting builder tries the lock again (and looks at the cancel event)."""

TAIL_LINES = 20
"""Lines of the installer's stderr quoted in a build failure."""

_MAX_LOG_BYTES = 1024 * 1024
_SMOKE_TEST = "import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 3)"


@dataclass(frozen=True)
class Built:
    """Where a ready environment is, and how this call got it."""

    path: Path
    waited: bool
    """True when the environment was not ready at first look (this call built or waited)."""
    built: bool
    """True when this call built it."""
    duration_ms: int = 0
    size_bytes: int = 0

    @property
    def python(self) -> Path:
        """The environment's interpreter: what python actions of the pack run."""
        return self.path / "bin" / "python"


def is_ready(path: Path) -> bool:
    """True when ``path`` holds a complete environment."""
    return os.path.isfile(path / READY_MARKER)


def ensure(
    spec: EnvironmentSpec,
    cancel: threading.Event,
    before_build: Callable[[], None] = lambda: None,
    on_failure: Callable[[PackEnvironmentError], None] = lambda _error: None,
    *,
    force: bool = False,
) -> Built:
    """The ready environment of ``spec``, built first if needed, within ``ATTUNE_ENV_TIMEOUT_S``.

    Under the lock, ``before_build`` runs just before a build (it may refuse by raising) and
    ``on_failure`` when the build failed, before the next waiter gets the lock; ``force``
    rebuilds even a ready environment. Raises :class:`PackEnvironmentError`.
    """
    path = spec.path
    if not force and is_ready(path):
        return Built(path, waited=False, built=False)
    deadline = time.monotonic() + spec.envs.timeout_s
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path.with_name(path.name + ".lock"), deadline, cancel, spec):
        if not force and is_ready(path):
            return Built(path, waited=True, built=False)
        before_build()
        for stray in path.parent.glob(f"{path.name}.tmp-*"):
            shutil.rmtree(stray, ignore_errors=True)  # a builder that died mid-way
        started = time.monotonic()
        temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            _build(spec, temporary, deadline, cancel)
            _install(spec, temporary, path)
        except PackEnvironmentError as error:
            on_failure(error)
            raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        duration_ms = round((time.monotonic() - started) * 1000)
        return Built(path, True, True, duration_ms, directory_size(path))


@contextlib.contextmanager
def in_use(path: Path) -> Iterator[None]:
    """Hold a shared lock on the environment's marker while the block runs (prune skips it)."""
    try:
        fd = os.open(path / READY_MARKER, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PackEnvironmentError(f"environment {path} was removed before its use") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def prune(envs_dir: Path, keep: set[Path]) -> list[Path]:
    """Remove the environments under ``envs_dir`` not in ``keep`` and used by no process (and
    leftovers of builders that died); the paths removed."""
    removed: list[Path] = []
    if not envs_dir.is_dir():
        return removed
    for pack_dir in sorted(entry for entry in envs_dir.iterdir() if entry.is_dir()):
        if pack_dir.name.startswith("."):
            continue  # the installers' cache
        for entry in sorted(pack_dir.iterdir()):
            if entry.is_dir() and entry not in keep and _removable(entry):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def directory_size(path: Path) -> int:
    """Bytes of the files under ``path`` (links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _removable(entry: Path, *, building: bool = True) -> bool:
    """True when no process uses ``entry`` and (``building``) no builder works on its key."""
    key = entry.name.split(".", 1)[0]
    locks = [(entry / READY_MARKER, False)]
    if building:
        locks.insert(0, (entry.with_name(f"{key}.lock"), True))
    with contextlib.ExitStack() as held:
        for lock_file, create in locks:
            flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_CREAT if create else 0)
            try:
                fd = os.open(lock_file, flags, 0o644)
            except FileNotFoundError:
                continue  # never became ready: only the key's lock matters
            held.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        return True


@contextlib.contextmanager
def _exclusive(
    lock_path: Path, deadline: float, cancel: threading.Event, spec: EnvironmentSpec
) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancel.is_set():
                    raise PackEnvironmentError(
                        "canceled while waiting for its environment", canceled=True
                    ) from None
                if time.monotonic() >= deadline:
                    raise PackEnvironmentError(
                        failure(
                            spec,
                            f"another build held the lock {lock_path} for "
                            f"ATTUNE_ENV_TIMEOUT_S={spec.envs.timeout_s:g} s",
                        )
                    ) from None
                time.sleep(LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def failure(spec: EnvironmentSpec, reason: str) -> str:
    """The message of a failed build: pack, host, key, installer, Python and why."""
    return (
        f"python environment for pack {spec.pack!r} could not be built on host "
        f"{socket.gethostname()} (key {spec.short_key}, {spec.installer.label()}, "
        f"Python {spec.interpreter.version}): {reason}"
    )


def _build(spec: EnvironmentSpec, target: Path, deadline: float, cancel: threading.Event) -> None:
    python = target / "bin" / "python"
    installer = spec.installer
    install = installer.install(python, spec.requirements_file, spec.envs)
    steps: Sequence[tuple[str, tuple[str, ...]]] = (
        ("creating the environment", installer.create(spec.interpreter, target)),
        ("installing requirements.txt", install),
        ("the smoke test", (str(python), "-c", _SMOKE_TEST)),
        ("checking dependencies", installer.check(python)),
    )
    env = installer.process_env(spec.envs)
    for what, argv in steps:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise PackEnvironmentError(failure(spec, f"ATTUNE_ENV_TIMEOUT_S reached before {what}"))
        try:
            finished = run_process(
                Spawn(argv, spec.pack_dir, env, None, remaining_s, 2.0, _MAX_LOG_BYTES), cancel
            )
        except OSError as exc:
            reason = f"{what}: cannot start {argv[0]}: {exc}"
            raise PackEnvironmentError(failure(spec, reason)) from None
        if finished.stop is Stop.CANCELED:
            raise PackEnvironmentError("canceled while its environment was built", canceled=True)
        if finished.stop is Stop.TIMEOUT:
            limit = f"ATTUNE_ENV_TIMEOUT_S={spec.envs.timeout_s:g} s"
            raise PackEnvironmentError(failure(spec, f"{what} took more than {limit}"))
        if finished.returncode != 0:
            output = finished.stderr.text.strip() or finished.stdout.text.strip()
            tail = "\n".join(output.splitlines()[-TAIL_LINES:])
            raise PackEnvironmentError(
                failure(spec, f"{what} exited with code {finished.returncode}:\n{tail}")
            )
    marker = {
        "inputs": spec.inputs,
        "key": spec.key,
        "pack": spec.pack,
        "built_by": {"host": socket.gethostname(), "pid": os.getpid()},
        "built_at": time.time(),
    }
    (target / READY_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def _install(spec: EnvironmentSpec, built: Path, path: Path) -> None:
    """Rename ``built`` into ``path``; a forced rebuild moves the old one aside first (it is
    removed at once when unused, else by the next prune)."""
    try:
        _rename_into_place(built, path)
    except OSError as exc:
        raise PackEnvironmentError(failure(spec, f"cannot move it into {path}: {exc}")) from None


def _rename_into_place(built: Path, path: Path) -> None:
    if path.exists():
        old = path.with_name(f"{path.name}.old-{secrets.token_hex(4)}")
        os.rename(path, old)
        os.rename(built, path)
        if _removable(old, building=False):  # this builder holds the key's lock
            shutil.rmtree(old, ignore_errors=True)
        return
    os.rename(built, path)
