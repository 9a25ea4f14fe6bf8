"""``attune packs load`` and ``attune actions list|show``, and the make targets that load packs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from attune.cli import main
from attune.store.db import Database
from tests.conftest import ROOT
from tests.pack_builder import action, write_pack

SHIPPED = ROOT / "packs"


def attune(database: Database, *args: str, packs_dir: Path = SHIPPED) -> Result:
    """Run the attune command line in-process against ``database``."""
    env = {
        "ATTUNE_DATABASE_URL": database.engine.url.render_as_string(hide_password=False),
        "ATTUNE_PACKS_DIR": str(packs_dir),
    }
    return CliRunner().invoke(main, list(args), env=env)


def test_packs_load_prints_the_counts_per_pack(database: Database) -> None:
    first = attune(database, "packs", "load")
    second = attune(database, "packs", "load")

    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        "core: 5 created, 0 updated, 0 unchanged, 0 removed (pack created)",
        "examples: 7 created, 0 updated, 0 unchanged, 0 removed (pack created);"
        " rules: 2 created, 0 updated, 0 unchanged, 0 removed",
    ]
    assert second.stdout.splitlines() == [
        "core: 0 created, 0 updated, 5 unchanged, 0 removed (pack unchanged)",
        "examples: 0 created, 0 updated, 7 unchanged, 0 removed (pack unchanged);"
        " rules: 0 created, 0 updated, 2 unchanged, 0 removed",
    ]


def test_packs_load_by_name_and_packs_dir_option(tmp_path: Path, database: Database) -> None:
    write_pack(tmp_path, "one")
    write_pack(tmp_path, "two")

    result = attune(database, "packs", "load", "--pack-name", "two", "--packs-dir", str(tmp_path))

    assert result.exit_code == 0, result.output
    assert result.stdout == "two: 1 created, 0 updated, 0 unchanged, 0 removed (pack created)\n"


def test_packs_load_exits_non_zero_listing_the_problems_and_loads_the_rest(
    tmp_path: Path, database: Database
) -> None:
    write_pack(tmp_path, "good")
    write_pack(tmp_path, "bad", {"x": action("bad.x", timeout=0, output_fromat="json")})

    result = attune(database, "packs", "load", "--packs-dir", str(tmp_path))

    assert result.exit_code == 1
    assert result.stdout.startswith("good: 1 created")
    assert "pack 'bad' has 2 problem(s)" in result.stderr
    assert "bad/actions/x.yaml: output_fromat: unknown key" in result.stderr
    assert "bad/actions/x.yaml: timeout: must be a whole number" in result.stderr
    assert "Error: 1 pack(s) not loaded" in result.stderr


def test_actions_list_shows_every_action_and_filters_by_pack(database: Database) -> None:
    attune(database, "packs", "load")

    everything = attune(database, "actions", "list")
    examples = attune(database, "actions", "list", "--pack", "examples", "--json")

    assert everything.exit_code == 0
    refs = [line.split()[0] for line in everything.stdout.splitlines()]
    assert refs == sorted(refs)
    assert len(refs) == 12
    assert "core.echo" in refs
    rows = json.loads(examples.stdout)
    assert [row["ref"] for row in rows][:2] == ["examples.dotenv_file", "examples.list_example"]
    assert {row["pack"] for row in rows} == {"examples"}


def test_actions_list_on_an_empty_database_says_so(database: Database) -> None:
    result = attune(database, "actions", "list")

    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "no actions loaded\n")


def test_actions_show_describes_one_action(database: Database) -> None:
    attune(database, "packs", "load")

    text = attune(database, "actions", "show", "examples.list_example")
    data = attune(database, "actions", "show", "core.http_request", "--json")

    assert text.exit_code == 0
    assert "runner:       shell actions/list_example.sh" in text.stdout
    assert "output:       jsonl" in text.stdout
    assert "count  integer, default 5, minimum 1, maximum 100" in text.stdout
    shown = json.loads(data.stdout)
    assert shown["ref"] == "core.http_request"
    assert shown["parameters"]["auth_token"] == {
        "type": "string",
        "description": 'Sent as the header "Authorization: Bearer <token>".',
        "secret": True,
    }


def test_actions_show_masks_a_secret_default(tmp_path: Path, database: Database) -> None:
    parameters = {"key": {"type": "string", "secret": True, "default": "hunter2"}}
    write_pack(tmp_path, "demo", {"a": action("demo.a", parameters=parameters)})
    attune(database, "packs", "load", "--packs-dir", str(tmp_path))

    for args in (("demo.a",), ("demo.a", "--json")):
        result = attune(database, "actions", "show", *args)
        assert "hunter2" not in result.stdout
        assert "********" in result.stdout


def test_actions_show_of_an_unknown_ref_fails(database: Database) -> None:
    result = attune(database, "actions", "show", "core.nope")

    assert result.exit_code == 1
    assert "action 'core.nope': no such action is loaded" in result.stderr


@pytest.mark.parametrize(
    "args", [("packs", "load"), ("actions", "list"), ("actions", "show", "core.echo")]
)
def test_an_unmigrated_database_tells_to_run_make_migrate(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    env = {"ATTUNE_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}

    result = CliRunner().invoke(main, list(args), env=env)

    assert result.exit_code == 1
    assert "is not migrated" in result.stderr
    assert "run `make migrate`" in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_setting_is_an_error_not_a_traceback() -> None:
    result = CliRunner().invoke(main, ["packs", "load"], env={"ATTUNE_DATABASE_URL": "mysql://x"})

    assert result.exit_code == 1
    assert "ATTUNE_DATABASE_URL" in result.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_load_packs_on_a_fresh_sqlite_database(tmp_path: Path) -> None:
    env = {**os.environ, "ATTUNE_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}

    def make(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    first = make("load-packs")
    second = make("load-packs")
    one = make("load-pack", "PACK=examples")

    assert first.returncode == 0, first.stderr
    assert "examples: 7 created, 0 updated, 0 unchanged, 0 removed (pack created)" in first.stdout
    assert "core: 0 created, 0 updated, 5 unchanged, 0 removed (pack unchanged)" in second.stdout
    assert "examples: 0 created, 0 updated, 7 unchanged" in one.stdout
    assert "core:" not in one.stdout


def test_packs_load_imports_no_celery(tmp_path: Path, database: Database) -> None:
    # Given a pack to load
    write_pack(tmp_path, "demo", {"a": action("demo.a")})
    # When `attune packs load` runs in a fresh interpreter
    probe = (
        "import sys\n"
        "from attune.cli import main\n"
        "try:\n"
        "    main(['packs', 'load'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'celery', 'kombu'}))\n"
    )
    env = {
        **os.environ,
        "ATTUNE_DATABASE_URL": database.engine.url.render_as_string(hide_password=False),
        "ATTUNE_PACKS_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    # Then the pack loaded, and neither Celery nor kombu was imported
    assert "demo: 1 created" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
