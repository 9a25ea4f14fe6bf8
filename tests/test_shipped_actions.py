"""The shipped actions' scripts, run directly the way the runtime runs them.

Each test resolves the parameters through ``attune.executions.params.resolve``, renders them in
the action's ``parameter_format`` and delivers them on stdin (then closes it) or in a mode-0400
file, with cwd = the pack and a cleaned environment, as the runtime does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from attune.executions.params import resolve
from attune.packs.reader import read_pack
from attune.packs.specs import ActionSpec
from attune.runtimes.command import POSIX_SH, shell_for
from tests.conftest import ROOT

PACKS = {name: read_pack(ROOT / "packs" / name) for name in ("core", "examples")}
ACTIONS = {action.ref: action for pack in PACKS.values() for action in pack.actions}


def dotenv(values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Sorted ``key='value'`` lines: quotes escaped, objects flattened, arrays JSON, null empty."""
    lines: list[str] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            lines += dotenv(value, prefix=f"{name}.")
            continue
        if value is None:
            lines.append(f"{name}=")
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        escaped = text.replace("'", "'\\''")
        lines.append(f"{name}='{escaped}'")
    return sorted(lines)


def document(fmt: str, values: Mapping[str, Any]) -> str:
    """The parameter document in format ``fmt``."""
    if fmt == "json":
        return json.dumps(values)
    if fmt == "yaml":
        return yaml.safe_dump(dict(values), sort_keys=True).rstrip("\n")
    return "\n".join(dotenv(values))


def run(
    ref: str, values: Mapping[str, Any] | None = None, tmp_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run action ``ref``'s script with ``values`` as the runtime would."""
    spec: ActionSpec = ACTIONS[ref]
    pack = ref.partition(".")[0]
    pack_dir = ROOT / "packs" / pack
    resolved = resolve(ref, spec.parameters or {}, values or {})
    rendered = document(spec.parameter_format, resolved) + "\n"
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env |= {
        "ATTUNE_EXECUTION_ID": "42",
        "ATTUNE_ACTION": ref,
        "ATTUNE_PACK": pack,
        "ATTUNE_PARAMETER_DELIVERY": spec.parameter_delivery,
        "ATTUNE_PARAMETER_FORMAT": spec.parameter_format,
    }
    stdin = rendered
    if spec.parameter_delivery == "file":
        assert tmp_path is not None, "file delivery needs a folder for the file"
        parameter_file = tmp_path / "parameters"
        parameter_file.write_text(rendered)
        parameter_file.chmod(0o400)
        env["ATTUNE_PARAMETER_FILE"] = str(parameter_file)
        stdin = ""
    entry = f"actions/{spec.entry_point}"
    shell = shell_for(str(pack_dir / entry), env["PATH"])
    argv = {"shell": [*shell, entry], "python": [sys.executable, entry], "native": [entry]}
    return subprocess.run(
        argv[spec.runner_type],
        input=stdin,
        cwd=pack_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# --- core ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    ["hello", "it's $HOME `date` \\n and 'quotes'", "two\nlines", "", "  padded  ", "'\\''"],
)
def test_core_echo_prints_the_message_as_given(message: str) -> None:
    done = run("core.echo", {"message": message})

    assert (done.returncode, done.stdout, done.stderr) == (0, message + "\n", "")


def test_core_echo_starts_no_other_process() -> None:
    script = (ROOT / "packs" / "core" / "actions" / "echo.sh").read_text()

    assert "$(" not in script
    assert "`" not in script
    assert "python" not in script


@pytest.mark.parametrize("name", ["echo", "noop"])
def test_core_echo_and_noop_are_posix_sh_run_by_sh(name: str) -> None:
    script = ROOT / "packs" / "core" / "actions" / f"{name}.sh"

    assert shell_for(str(script), os.defpath) == (POSIX_SH,)
    checked = subprocess.run(["dash", "-n", str(script)], capture_output=True, text=True)
    assert (checked.returncode, checked.stderr) == (0, "")


def test_core_noop_does_nothing_by_default() -> None:
    done = run("core.noop")

    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_core_noop_prints_the_message_and_exits_with_the_code() -> None:
    done = run("core.noop", {"message": "bye 'now'", "exit_code": 3})

    assert (done.returncode, done.stdout) == (3, "bye 'now'\n")


def test_core_sleep_sleeps_for_the_given_seconds() -> None:
    started = time.monotonic()
    done = run("core.sleep", {"seconds": 0.3})

    assert done.returncode == 0
    assert 0.3 <= time.monotonic() - started < 5


def test_core_local_runs_the_command_in_the_pack_by_default() -> None:
    done = run("core.local", {"cmd": 'echo "hi $((1 + 2))"; pwd; cat; echo err >&2'})

    assert done.returncode == 0
    assert done.stdout.splitlines() == ["hi 3", str(ROOT / "packs" / "core")]
    assert done.stderr == "err\n"


def test_core_local_runs_in_cwd_and_returns_the_exit_code(tmp_path: Path) -> None:
    done = run("core.local", {"cmd": "pwd; exit 7", "cwd": str(tmp_path)})

    assert (done.returncode, done.stdout) == (7, f"{tmp_path}\n")


def test_core_local_fails_on_a_missing_cwd(tmp_path: Path) -> None:
    done = run("core.local", {"cmd": "echo never", "cwd": str(tmp_path / "missing")})

    assert done.returncode == 1
    assert done.stdout == ""
    assert "cannot enter cwd" in done.stderr


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with JSON describing it; /missing answers 404."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        payload = json.dumps(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        ).encode()
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 - http.server's names

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """A local HTTP server on 127.0.0.1 that echoes requests as JSON."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_core_http_request_gets_a_url(http_url: str) -> None:
    done = run("core.http_request", {"url": f"{http_url}/hello?x=1", "auth_token": "t0ken"})

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == {"status_code", "headers", "body", "elapsed_ms"}
    assert result["status_code"] == 200
    assert result["headers"]["Content-Type"].startswith("application/json")
    assert result["body"]["method"] == "GET"
    assert result["body"]["path"] == "/hello?x=1"
    assert result["body"]["headers"]["Authorization"] == "Bearer t0ken"
    assert result["elapsed_ms"] >= 0


def test_core_http_request_posts_an_object_as_json(http_url: str) -> None:
    done = run(
        "core.http_request",
        {"url": http_url, "method": "POST", "body": {"a": [1, 2]}, "headers": {"X-Id": "7"}},
    )

    sent = json.loads(done.stdout)["body"]
    assert (sent["method"], json.loads(sent["body"])) == ("POST", {"a": [1, 2]})
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["headers"]["X-Id"] == "7"


def test_core_http_request_sends_a_string_body_as_is(http_url: str) -> None:
    done = run("core.http_request", {"url": http_url, "method": "PUT", "body": "plain text"})

    assert json.loads(done.stdout)["body"]["body"] == "plain text"


def test_core_http_request_returns_an_error_status_and_exits_1(http_url: str) -> None:
    done = run("core.http_request", {"url": f"{http_url}/missing"})

    assert done.returncode == 1
    assert json.loads(done.stdout)["status_code"] == 404


def test_core_http_request_without_an_answer_exits_2_with_the_reason() -> None:
    done = run("core.http_request", {"url": "http://127.0.0.1:9/", "timeout": 2})

    assert (done.returncode, done.stdout) == (2, "")
    assert "core.http_request: http://127.0.0.1:9/" in done.stderr


# --- examples ------------------------------------------------------------------------------


def test_examples_list_example_prints_count_json_lines() -> None:
    done = run("examples.list_example", {"count": 3})

    assert done.returncode == 0, done.stderr
    items = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(item["id"], item["value"]) for item in items] == [
        (1, "item_1"),
        (2, "item_2"),
        (3, "item_3"),
    ]
    for item in items:
        assert set(item) == {"id", "value", "timestamp"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["timestamp"])
        stamped = datetime.fromisoformat(item["timestamp"])
        assert abs(time.time() - stamped.timestamp()) < 60


def test_examples_list_example_prints_five_by_default() -> None:
    assert len(run("examples.list_example").stdout.splitlines()) == 5


def test_examples_text_stats_returns_json() -> None:
    done = run("examples.text_stats", {"text": "the cat and the hat\nthe end", "top": 2})

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "characters": 27,
        "words": 7,
        "lines": 2,
        "top_words": [{"word": "the", "count": 3}, {"word": "cat", "count": 1}],
    }


def test_examples_yaml_report_returns_yaml_holding_its_parameters() -> None:
    values = {"title": "Weekly: 'ops' report", "items": ["a: b", "- c", "multi\nline"]}

    done = run("examples.yaml_report", values)

    assert done.returncode == 0, done.stderr
    report = yaml.safe_load(done.stdout)
    assert report["action"] == "examples.yaml_report"
    assert report["execution_id"] == 42
    assert report["parameters"] == values


def test_examples_native_greet_is_run_directly() -> None:
    assert ACTIONS["examples.native_greet"].runner_type == "native"
    assert run("examples.native_greet").stdout == "Hello, world!\n"
    assert run("examples.native_greet", {"name": "Ada", "shout": True}).stdout == "HELLO, ADA!\n"


def test_examples_dotenv_file_reads_its_parameter_file(tmp_path: Path) -> None:
    done = run("examples.dotenv_file", {"name": "O'Brien", "times": 2}, tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, O'Brien!\nHello, O'Brien!\n"


def test_every_shipped_action_has_a_test_that_runs_it() -> None:
    source = Path(__file__).read_text()

    processes = {ref for ref, action in ACTIONS.items() if action.runner_type != "workflow"}
    assert {
        ref for ref in processes if f'run(\n        "{ref}"' in source or f'run("{ref}"' in source
    } == processes  # the workflows run in tests/test_example_workflows.py
