"""schemathesis against the served OpenAPI document: every check, stateful links included.

The two event streams and ``/wait`` are left out: they hold a request open by design (for as
long as the client listens, or up to ``timeout_s``), which a fuzzer would read as a hang; their
own tests are in ``test_streams.py`` and ``test_server.py``.

``positive_data_acceptance`` is left out for a reason the document cannot express: an
execution's ``parameters`` are checked against the chosen action's own schema, so a body that
matches the request schema may still (rightly) get a 422 naming the bad parameter.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.api.conftest import serve
from tests.cluster import BIN, attune_cli

pytestmark = pytest.mark.slow


def test_schemathesis_finds_nothing(embedded_env: dict[str, str], tmp_path: Path) -> None:
    created = attune_cli(embedded_env, "apikey", "create", "fuzzer", "--scope", "admin")
    assert created.returncode == 0, created.stderr
    server = serve(embedded_env, tmp_path)
    try:
        result = subprocess.run(
            [
                str(BIN / "schemathesis"),
                "run",
                f"{server.base_url}/api/v1/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--exclude-path-regex",
                "(/stream|/wait)$",
                "--header",
                f"Authorization: Bearer {created.stdout.strip()}",
                "--max-examples",
                "15",
                "--seed",
                "20261201",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
            cwd=tmp_path,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-6000:]
    assert "failures" not in result.stdout.rpartition("SUMMARY")[2], result.stdout[-6000:]
