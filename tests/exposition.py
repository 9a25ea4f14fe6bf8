"""Reading Prometheus text exposition in tests."""

from __future__ import annotations

import urllib.request


def samples(body: str) -> dict[str, float]:
    """Every sample of an exposition, keyed by name with its labels as written."""
    found: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def scrape(port: int) -> dict[str, float]:
    """The samples served at ``http://127.0.0.1:<port>/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return samples(response.read().decode())
