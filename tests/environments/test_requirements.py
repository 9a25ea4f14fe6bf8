"""Declaring an environment: requirements.txt and python: validated at load, kept on the pack."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from attune.environments.requirements import read_requirements
from attune.packs.loader import load_packs
from attune.packs.reader import read_pack
from attune.store.db import Database
from attune.store.models import Pack
from tests.cluster import attune_cli
from tests.environments.conftest import env_pack
from tests.pack_builder import write_pack


def problems_of(pack_dir: Path, text: str) -> list[str]:
    (pack_dir / "requirements.txt").write_text(text)
    return read_requirements(pack_dir)[1]


def test_a_pack_without_requirements_needs_no_environment(tmp_path: Path) -> None:
    spec = read_pack(write_pack(tmp_path, "plain"))

    assert spec.requirements_digest is None
    assert spec.python is None
    assert spec.columns()["requirements_digest"] is None


def test_load_stores_the_digest_and_the_python_range(database: Database, tmp_path: Path) -> None:
    env_pack(tmp_path, "withenv", "demo-lib==1.0\n", python=">=3.11,<4")

    result = load_packs(database, tmp_path, ["withenv"])

    assert result.ok, result.errors
    assert result.warnings == ()
    with database.session_scope() as session:
        pack = session.scalars(select(Pack).where(Pack.ref == "withenv")).one()
        assert pack.python == ">=3.11,<4"
        assert pack.requirements_digest is not None
        assert len(pack.requirements_digest) == 64


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("--index-url https://example.org/simple", "--index-url is refused: where packages"),
        ("-i https://example.org/simple", "-i is refused"),
        ("--extra-index-url=https://example.org/simple", "--extra-index-url is refused"),
        ("--find-links /srv/wheels", "--find-links is refused"),
        ("--trusted-host example.org", "--trusted-host is refused"),
        ("-e ./src", "editable installs (-e) are not supported"),
        ("-r ../elsewhere.txt", "outside the pack"),
        ("-c /etc/constraints.txt", "outside the pack"),
        ("-r missing.txt", "no such file"),
        ("--global-option=x", "option '--global-option' is not allowed"),
        ("./wheels/demo.whl", "paths and URLs are not allowed"),
        ("demo-lib==1.0 --install-option=x", "only --hash may follow a requirement"),
        ("demo lib", "is not a requirement specifier"),
    ],
)
def test_bad_lines_are_refused_naming_file_line_and_value(
    tmp_path: Path, line: str, expected: str
) -> None:
    pack_dir = write_pack(tmp_path, "bad")
    (tmp_path / "elsewhere.txt").write_text("demo-lib==1.0\n")

    problems = problems_of(pack_dir, f"# a comment\n{line}\n")

    assert len(problems) == 1, problems
    assert f"{pack_dir / 'requirements.txt'}: line 2: " in problems[0]
    assert expected in problems[0]


def test_a_pack_with_a_bad_requirement_writes_nothing(database: Database, tmp_path: Path) -> None:
    env_pack(tmp_path, "badenv", "--index-url https://example.org/simple\n", python="3.11")

    result = load_packs(database, tmp_path, ["badenv"])

    assert not result.ok
    text = str(result.errors[0])
    assert "requirements.txt: line 1: --index-url is refused" in text
    assert "pack.yaml: python: '3.11' is not a version range such as '>=3.11,<3.14'" in text
    with database.session_scope() as session:
        assert session.scalars(select(Pack)).all() == []


def test_unpinned_lines_load_with_a_warning_unless_a_constraint_pins_them(tmp_path: Path) -> None:
    pack_dir = write_pack(tmp_path, "loose")
    (pack_dir / "constraints").mkdir()
    (pack_dir / "constraints" / "pins.txt").write_text("other==3.0\n")
    requirements = (
        "demo-lib>=1.0  # not pinned\n"
        "other\n"
        "pinned[extra]==2.0 ; python_version >= '3'\n"
        "direct @ https://example.org/direct-1.0-py3-none-any.whl\n"
        "wild==1.*\n"
        "-c constraints/pins.txt\n"
        "--only-binary :all:\n"
        "--pre\n"
    )

    (pack_dir / "requirements.txt").write_text(requirements)
    spec = read_pack(pack_dir)

    assert spec.requirements_digest is not None
    assert len(spec.warnings) == 2, spec.warnings
    assert "line 1: demo-lib is not pinned with ==" in spec.warnings[0]
    assert "line 5: wild is not pinned with ==" in spec.warnings[1]


def test_the_cli_prints_the_warnings_and_still_loads(tmp_path: Path, sqlite_url: str) -> None:
    env_pack(tmp_path, "loosecli", "demo-lib>=1.0\n")

    loaded = attune_cli(
        {"ATTUNE_DATABASE_URL": sqlite_url, "PATH": "/usr/bin:/bin"},
        "packs", "load", "--packs-dir", str(tmp_path),
    )  # fmt: skip

    assert loaded.returncode == 0, loaded.stderr
    assert "warning: " in loaded.stderr
    assert "demo-lib is not pinned with ==" in loaded.stderr
    assert "loosecli: 1 created" in loaded.stdout


def test_the_digest_covers_included_files(tmp_path: Path) -> None:
    pack_dir = write_pack(tmp_path, "nested")
    (pack_dir / "more.txt").write_text("demo-lib==1.0\n")
    (pack_dir / "requirements.txt").write_text("-r more.txt\n")
    first = read_requirements(pack_dir)[0]

    (pack_dir / "more.txt").write_text("demo-lib==2.0\n")
    second = read_requirements(pack_dir)[0]

    assert first is not None
    assert second is not None
    assert first.files == ("requirements.txt", "more.txt")
    assert first.digest != second.digest


def test_a_requirements_file_including_itself_is_refused(tmp_path: Path) -> None:
    pack_dir = write_pack(tmp_path, "loop")

    problems = problems_of(pack_dir, "-r requirements.txt\n")

    assert len(problems) == 1
    assert "includes itself" in problems[0]
