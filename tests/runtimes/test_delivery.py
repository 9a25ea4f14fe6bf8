"""Parameter delivery and formats, environment, working directory and interpreters."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from attune.runtimes import Outcome
from attune.settings import Settings
from attune.store.models import ParameterDelivery, ParameterFormat, RunnerType

from .conftest import Pack

PARAMETERS = {
    "name": "O'Brien's \"pub\"",
    "count": 3,
    "ratio": 0.5,
    "flag": True,
    "nothing": None,
    "tags": ["a", "b c"],
    "nested": {"inner": {"deep": "x"}, "empty": {}, "n": 1},
    "empty": {},
}

DOTENV = (
    "count='3'\n"
    "flag='true'\n"
    "name='O'\\''Brien'\\''s \"pub\"'\n"
    "nested.inner.deep='x'\n"
    "nested.n='1'\n"
    "nothing=''\n"
    "ratio='0.5'\n"
    'tags=\'["a","b c"]\'\n'
)

READ_DOCUMENT = {
    ParameterDelivery.STDIN: 'cat\necho "stdin done"\n',
    ParameterDelivery.FILE: 'cat "$ATTUNE_PARAMETER_FILE"\necho "stdin: $(cat)"\n',
}


@pytest.mark.parametrize("delivery", list(ParameterDelivery))
@pytest.mark.parametrize("parameter_format", list(ParameterFormat))
def test_each_delivery_and_format(
    pack: Pack, delivery: ParameterDelivery, parameter_format: ParameterFormat
) -> None:
    # Given an action that prints the document it was given
    body = f'echo "$ATTUNE_PARAMETER_DELIVERY $ATTUNE_PARAMETER_FORMAT"\n{READ_DOCUMENT[delivery]}'
    # When it runs
    result = pack.run(
        body,
        parameters=PARAMETERS,
        parameter_delivery=delivery,
        parameter_format=parameter_format,
    )
    # Then it received the document in that format, the right way, and nothing else
    assert result.outcome is Outcome.SUCCEEDED, result
    header, _, rest = result.stdout.partition("\n")
    assert header == f"{delivery} {parameter_format}"
    trailer = "stdin done\n" if delivery is ParameterDelivery.STDIN else "stdin: \n"
    assert rest.endswith(trailer)
    document = rest.removesuffix(trailer)
    if parameter_format is ParameterFormat.JSON:
        assert document.count("\n") == 1
        assert json.loads(document) == PARAMETERS
    elif parameter_format is ParameterFormat.YAML:
        assert yaml.safe_load(document) == PARAMETERS
    else:
        assert document == DOTENV


def test_dotenv_lines_evaluate_to_the_values_in_a_shell(pack: Pack) -> None:
    body = (
        'while IFS= read -r line; do eval "$line"; done\n'
        'printf "%s|%s|%s" "$name" "$count" "$nothing"\n'
    )
    result = pack.run(
        body,
        parameters={"name": 'it\'s $HOME `x` "q"', "count": 7, "nothing": None},
        parameter_format=ParameterFormat.DOTENV,
    )
    assert result.stdout == 'it\'s $HOME `x` "q"|7|'


def test_empty_parameters_give_a_document_that_is_just_a_newline(pack: Pack) -> None:
    result = pack.run("od -c | head -1\n", parameter_format=ParameterFormat.DOTENV)
    assert result.stdout.split()[1:] == ["\\n"]


def test_parameter_file_is_mode_0400_and_removed_afterwards(pack: Pack) -> None:
    body = 'stat -c %a "$ATTUNE_PARAMETER_FILE"\necho "$ATTUNE_PARAMETER_FILE"\n'
    result = pack.run(body, parameters={"a": 1}, parameter_delivery=ParameterDelivery.FILE)
    mode, path = result.stdout.split()
    assert mode == "400"
    assert not Path(path).exists()


def test_parameter_file_is_removed_when_the_action_fails(pack: Pack) -> None:
    body = 'echo "$ATTUNE_PARAMETER_FILE"\nexit 4\n'
    result = pack.run(body, parameter_delivery=ParameterDelivery.FILE)
    assert result.outcome is Outcome.FAILED
    assert not Path(result.stdout.strip()).exists()


def test_environment_is_cleaned(pack: Pack) -> None:
    # Given a worker whose environment holds its database and broker URLs with passwords
    settings = Settings.from_env(
        {
            "PATH": os.defpath,
            "HOME": "/home/worker",
            "LANG": "C.UTF-8",
            "LC_TIME": "C",
            "TZ": "UTC",
            "ATTUNE_DATABASE_URL": "postgresql+psycopg://attune:db-password@db/attune",
            "ATTUNE_BROKER_URL": "redis://:broker-password@redis:6379/0",
            "AWS_SECRET_ACCESS_KEY": "aws-secret",
            "ATTUNE_PASSTHROUGH_ENV": "HTTP_PROXY",
            "HTTP_PROXY": "http://proxy:3128",
        }
    )
    # When an action prints the environment it was started with
    result = pack.run(
        "tr '\\0' '\\n' < /proc/$$/environ\n",
        base_env=settings.inherited_env,
        execution_id=7,
    )
    # Then it holds exactly the inherited and the ATTUNE_* variables, no credentials
    environ = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert environ == {
        "PATH": os.defpath,
        "HOME": "/home/worker",
        "LANG": "C.UTF-8",
        "LC_TIME": "C",
        "TZ": "UTC",
        "HTTP_PROXY": "http://proxy:3128",
        "ATTUNE_EXECUTION_ID": "7",
        "ATTUNE_ACTION": "testpack.act",
        "ATTUNE_PACK": "testpack",
        "ATTUNE_PARAMETER_DELIVERY": "stdin",
        "ATTUNE_PARAMETER_FORMAT": "json",
    }
    assert "password" not in result.stdout


def test_working_directory_is_the_pack_directory(pack: Pack) -> None:
    result = pack.run("pwd -P\n")
    assert result.stdout == f"{pack.path.resolve()}\n"


def test_python_action_imports_from_the_pack_lib(pack: Pack) -> None:
    # Given a pack with a module in lib/
    (pack.path / "lib").mkdir()
    (pack.path / "lib" / "helper.py").write_text("GREETING = 'hi from lib'\n")
    body = (
        "import os, sys, helper\nprint(helper.GREETING, sys.executable, os.getcwd(), sep='\\n')\n"
    )
    # When a python action imports it
    result = pack.run(body, RunnerType.PYTHON)
    # Then it runs on the worker's real interpreter, in the pack, with lib/ importable
    assert result.outcome is Outcome.SUCCEEDED, result.error
    greeting, executable, cwd = result.stdout.splitlines()
    assert greeting == "hi from lib"
    assert os.path.realpath(executable) == os.path.realpath(sys.executable)
    assert cwd == str(pack.path.resolve())


def test_python_action_runs_on_the_pack_venv_when_there_is_one(pack: Pack) -> None:
    venv_bin = pack.path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text('#!/bin/sh\necho "pack venv: $(basename "$1") $PYTHONPATH"\n')
    (venv_bin / "python").chmod(0o755)
    result = pack.run("print('not this')\n", RunnerType.PYTHON)
    assert result.stdout == f"pack venv: act.py {pack.path / 'lib'}\n"


def test_pythonpath_passed_through_comes_after_the_pack_lib(pack: Pack) -> None:
    settings = Settings.from_env(
        {"PATH": os.defpath, "PYTHONPATH": "/opt/shared", "ATTUNE_PASSTHROUGH_ENV": "PYTHONPATH"}
    )
    body = "import os\nprint(os.environ['PYTHONPATH'])\n"
    result = pack.run(body, RunnerType.PYTHON, base_env=settings.inherited_env)
    assert result.stdout == f"{pack.path / 'lib'}:/opt/shared\n"


def test_native_action_is_executed_directly(pack: Pack) -> None:
    result = pack.run('#!/bin/sh\necho "native $0"\n', RunnerType.NATIVE)
    assert result.stdout == f"native {pack.path / 'actions' / 'act'}\n"
