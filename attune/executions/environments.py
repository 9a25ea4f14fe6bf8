"""Environments of executions: the step between the claim and the spawn of a python action
whose pack has a ``requirements.txt``, and ``prepare``, warm-up and prune on this host.

Never a silent fallback: an environment that cannot be built fails the execution with the
host, the key, the installer, the Python version and the installer's last lines of stderr.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, select

from attune.environments import builder
from attune.environments.builder import Built
from attune.environments.installer import choose
from attune.environments.interpreter import require_python, worker_interpreter
from attune.environments.requirements import REQUIREMENTS_FILE, read_requirements
from attune.environments.spec import EnvironmentSpec
from attune.errors import PackEnvironmentError
from attune.executions import env_records
from attune.runtimes import Invocation
from attune.settings import Settings
from attune.store.db import Database
from attune.store.models import Pack, RunnerType

log = logging.getLogger(__name__)

_PACK = cast(Table, Pack.__table__).c
_DECLARED = select(_PACK.requirements_digest, _PACK.python).where(_PACK.ref == bindparam("ref"))


@functools.cache
def this_host() -> str:
    """The host name environments are recorded under."""
    return socket.gethostname()


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` did for one pack: its environment's key and path, or the error."""

    pack: str
    key: str | None = None
    path: Path | None = None
    built: bool = False
    error: str | None = None


@contextmanager
def environment_of(
    database: Database, settings: Settings, invocation: Invocation
) -> Iterator[Invocation]:
    """``invocation`` to run in its pack's environment (built first if needed), held in use
    while the block runs; unchanged for actions that need none. Raises
    :class:`PackEnvironmentError` when the environment cannot be had."""
    declared = None
    if invocation.runtime == RunnerType.PYTHON:
        found = database.run(_DECLARED, {"ref": invocation.pack_ref})
        declared = found[0] if found else None
    if declared is None or (declared.requirements_digest is None and declared.python is None):
        yield invocation
        return
    require_python(invocation.pack_ref, declared.python, worker_interpreter())
    if declared.requirements_digest is None:
        yield invocation
        return
    digest = declared.requirements_digest
    spec = spec_for(settings, invocation.pack_ref, invocation.pack_dir, digest)
    attempted: list[bool] = []
    try:
        built = ensure_environment(database, spec, invocation.cancel, attempted=attempted)
    except PackEnvironmentError:
        use = {"waited": bool(attempted), "built": bool(attempted)}
        env_records.record_use(database, invocation.execution_id, this_host(), spec.key, **use)
        raise
    use = {"waited": built.waited, "built": built.built}
    env_records.record_use(database, invocation.execution_id, this_host(), spec.key, **use)
    with builder.in_use(built.path):
        yield dataclasses.replace(invocation, python=str(built.python))


def spec_for(
    settings: Settings, pack: str, pack_dir: Path, loaded_digest: str | None
) -> EnvironmentSpec:
    """The environment of ``pack`` on this host, from the requirements on disk, which must be
    the ones the pack was loaded with (``loaded_digest``)."""
    requirements, problems = read_requirements(pack_dir)
    where = pack_dir / REQUIREMENTS_FILE
    if problems:
        listed = "\n".join(problems)
        raise PackEnvironmentError(f"pack {pack!r}: {where} cannot be used:\n{listed}")
    if requirements is None:
        raise PackEnvironmentError(
            f"pack {pack!r} was loaded with a {REQUIREMENTS_FILE} but {where} is gone; "
            f"run `attune packs load --pack-name {pack}`"
        )
    if loaded_digest is not None and requirements.digest != loaded_digest:
        raise PackEnvironmentError(
            f"pack {pack!r}: {where} changed since the pack was loaded (loaded "
            f"{loaded_digest[:12]}, on disk {requirements.digest[:12]}); run "
            f"`attune packs load --pack-name {pack}`"
        )
    installer = choose(settings.envs.installer)
    interpreter = worker_interpreter()
    return EnvironmentSpec(pack, pack_dir, requirements, interpreter, installer, settings.envs)


def ensure_environment(
    database: Database,
    spec: EnvironmentSpec,
    cancel: threading.Event,
    *,
    force: bool = False,
    attempted: list[bool] | None = None,
) -> Built:
    """The ready environment of ``spec`` on this host, built if needed and recorded (a failure
    too, with its backoff); appends to ``attempted`` when this call started a build."""
    host = this_host()

    def before_build() -> None:
        env_records.check_backoff(database, host, spec, force=force)
        if attempted is not None:
            attempted.append(True)

    def on_failure(error: PackEnvironmentError) -> None:
        if error.canceled:
            env_records.record_canceled(database, host, spec)
        else:
            env_records.record_failure(database, host, spec, str(error))

    built = builder.ensure(spec, cancel, before_build, on_failure, force=force)
    if built.built:
        env_records.record_ready(database, host, spec, built)
        log.info(
            "built the environment of pack %s at %s in %d ms",
            spec.pack,
            built.path,
            built.duration_ms,
        )
    return built


def prepare(
    database: Database, settings: Settings, names: Sequence[str] = (), *, force: bool = False
) -> list[Prepared]:
    """Build the environments of the loaded packs ``names`` (every pack with requirements when
    empty) on this host; ``force`` rebuilds ready ones and clears a failure's backoff."""
    declared = _declared(database, names)
    results: list[Prepared] = []
    for name in names:
        if name not in declared:
            results.append(Prepared(name, error=f"pack {name!r} is not loaded"))
        elif declared[name][0] is None:
            results.append(Prepared(name, error=f"pack {name!r} has no {REQUIREMENTS_FILE}"))
    for pack, (digest, python) in declared.items():
        if digest is None:
            continue
        try:
            require_python(pack, python, worker_interpreter())
            spec = spec_for(settings, pack, settings.packs_dir.absolute() / pack, digest)
            built = ensure_environment(database, spec, threading.Event(), force=force)
        except PackEnvironmentError as exc:
            results.append(Prepared(pack, error=str(exc)))
            continue
        results.append(Prepared(pack, spec.short_key, built.path, built.built))
    return results


def warm_up(database: Database, settings: Settings) -> threading.Thread:
    """Build the environments of every loaded pack in a background thread (a worker at start);
    each outcome is logged."""

    def work() -> None:
        try:
            for prepared in prepare(database, settings):
                if prepared.error:
                    log.error("environment of pack %s: %s", prepared.pack, prepared.error)
                else:
                    log.info("environment of pack %s ready at %s", prepared.pack, prepared.path)
        except Exception:  # the worker serves on; executions will report their own errors
            log.exception("warming up the pack environments failed")

    thread = threading.Thread(target=work, name="attune-env-warm-up", daemon=True)
    thread.start()
    return thread


def prune(database: Database, settings: Settings) -> list[Path]:
    """Remove this host's environments that match no current key of a loaded pack and that
    no process uses; the paths removed."""
    current: set[Path] = set()
    for pack, (digest, _python) in _declared(database, ()).items():
        if digest is None:
            continue
        try:
            current.add(spec_for(settings, pack, settings.packs_dir.absolute() / pack, digest).path)
        except PackEnvironmentError as exc:
            log.warning("pack %s: %s", pack, exc)
    removed = builder.prune(settings.envs.envs_dir.absolute(), current)
    with database.session_scope() as session:
        env_records.forget(session, this_host(), [str(path) for path in removed])
    return removed


def _declared(database: Database, names: Sequence[str]) -> dict[str, tuple[Any, Any]]:
    """(requirements digest, python range) of the loaded packs ``names`` (all when empty)."""
    query = select(Pack.ref, Pack.requirements_digest, Pack.python).order_by(Pack.ref)
    if names:
        query = query.where(Pack.ref.in_(names))
    with database.session_scope() as session:
        return {row.ref: (row.requirements_digest, row.python) for row in session.execute(query)}
