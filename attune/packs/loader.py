"""Load packs: read each pack folder and upsert it, one transaction per pack."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from attune.errors import DatabaseError, PackError
from attune.packs.fingerprint import PackFiles, read_files
from attune.packs.reader import discover, read_pack
from attune.packs.specs import PackSpec
from attune.packs.streaming import ActionStream
from attune.packs.upsert import PackReport, pack_exists, unchanged_report, upsert_pack
from attune.store.db import Database


@dataclass(frozen=True)
class LoadResult:
    """The outcome of :func:`load_packs`: a report per loaded pack, an error per refused one."""

    reports: tuple[PackReport, ...]
    errors: tuple[PackError, ...]
    warnings: tuple[str, ...] = ()
    """Things that loaded but deserve a look (unpinned requirements), each naming its file."""

    @property
    def ok(self) -> bool:
        """True when every pack loaded."""
        return not self.errors


def load_packs(database: Database, packs_dir: Path, names: Sequence[str] = ()) -> LoadResult:
    """Load the packs ``names`` (every pack when empty) from ``packs_dir``.

    Each pack is validated whole and written in its own transaction; a pack with any problem
    writes nothing and is reported in ``errors`` while the others still load. A pack whose
    files hash as when it was last loaded (:mod:`attune.packs.fingerprint`) is reported
    unchanged without parsing any of them. Raises
    :class:`~attune.errors.DatabaseError` when the database is unreachable or not migrated.
    """
    reports: list[PackReport] = []
    errors: list[PackError] = []
    warnings: list[str] = []
    pack_dirs = discover(packs_dir, names)
    postgresql = database.engine.dialect.name == "postgresql"
    if not pack_dirs:
        database.require_schema()
    for pack_dir in pack_dirs:
        try:
            files = read_files(pack_dir)
            with database.session_scope(autocommit=True) as session:
                report = unchanged_report(session, files)
                # A new pack on PostgreSQL is written while it is read (attune.packs.streaming).
                stream = report is None and postgresql and not pack_exists(session, pack_dir.name)
            if report is None:
                report, spec = _read_and_write(database, pack_dir, files, stream)
                warnings.extend(spec.warnings)
            reports.append(report)
        except PackError as error:
            errors.append(error)
        except IntegrityError as error:  # another loader wrote the same pack meanwhile
            errors.append(
                PackError(pack_dir.name, [f"{pack_dir}: the database refused it: {error.orig}"])
            )
        except SQLAlchemyError as error:
            # Checked only now: a reload that parses nothing is a few round trips, not one more.
            database.require_schema()  # says so when the database is unreachable or unmigrated
            raise DatabaseError(f"loading pack {pack_dir.name!r} failed: {error}") from error
    return LoadResult(tuple(reports), tuple(errors), tuple(warnings))


def _read_and_write(
    database: Database, pack_dir: Path, files: PackFiles, stream: bool
) -> tuple[PackReport, PackSpec]:
    """Read the pack and upsert it in one transaction: with ``stream``, while it is read."""
    if not stream:
        spec = read_pack(pack_dir, files)
        with database.session_scope() as session:
            return upsert_pack(session, spec), spec
    writer = ActionStream(database, pack_dir.name)
    try:
        spec = read_pack(pack_dir, files, writer)
    except BaseException:
        writer.abandon()
        raise
    return writer.finish(spec), spec
