"""Benchmark: the ``/executions`` page vs ``GET /api/v1/executions?limit=50``, 1,000,000 rows.

Run by ``make bench``. On the database :mod:`bench_api` builds (its own, filled with
``generate_series``, dropped afterwards), one real ``attune serve`` answers both: the API
route with a Bearer key, the page (50 rows rendered by Jinja2) with a session cookie from
``/login``. Goal (issue 17): the page's first render ≤ 2 × the API's first page, both asked
by the same client: the standard library's (as lean as a client gets), then httpx. The page
renders each distinct row once, so a page asked again re-renders nothing: a line of older pages
whose rows no request rendered before gives the cold cost beside it (for information).
"""

from __future__ import annotations

import httpx
from bench_api import PAGE, ROWS, LeanClient, filled_database, served, timed_pair


def _ok(response: httpx.Response) -> None:
    response.raise_for_status()


def main() -> int:
    """Fill, serve, sign a browser-like client in, time both first pages, print the ratio."""
    with filled_database("web") as (url, token), served(url, token) as api:
        page = httpx.Client(base_url=api.base_url)
        signed_in = page.post("/login", data={"key": token}, follow_redirects=False)
        assert signed_in.status_code == 303, signed_in.text
        html = page.get("/executions")
        assert html.text.count('<tr data-id="') == 50, html.text[:500]
        lean_api, lean_page = LeanClient(api), LeanClient(page)
        unseen = iter(range(ROWS // 2, 0, -PAGE))  # pages of rows no request rendered before
        for how, list_page, render_page in (
            (
                "",
                lambda: lean_api.get("/api/v1/executions", {"limit": PAGE}),
                lambda: lean_page.get("/executions", {}),
            ),
            (
                " (rows never rendered before)",
                lambda: lean_api.get("/api/v1/executions", {"limit": PAGE}),
                lambda: lean_page.get("/executions", {"older": next(unseen)}),
            ),
            (
                " (httpx)",
                lambda: _ok(api.get("/api/v1/executions", params={"limit": PAGE})),
                lambda: _ok(page.get("/executions")),
            ),
        ):
            listed, rendered = timed_pair(list_page, render_page)
            goal = "" if "never" in how else " (goal <= 2)"
            print(
                f"  /executions page{how:<30} {rendered * 1000:7.3f} ms   API first page"
                f" {listed * 1000:7.3f} ms   ratio {rendered / listed:5.2f}x{goal}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
