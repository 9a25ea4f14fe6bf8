"""``create_app(settings)``: the FastAPI app serving ``/api/v1``; nothing happens at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from attune import __version__, metrics
from attune.api import problems
from attune.api.auth import Access
from attune.api.eventfeed import EventFeed
from attune.api.events import hub
from attune.api.guard import Guard
from attune.api.lane import ListingLane
from attune.api.routes import PREFIX, catalog, executions, health, streams, webhooks, workers
from attune.settings import Settings
from attune.store.asyncreader import AsyncReader
from attune.web import site
from attune.worker.app import embedded_worker, resources


class Api(FastAPI):
    """FastAPI, with the executions list's plainest pages answered ahead of its middleware
    (:mod:`attune.api.lane`: the middleware costs more than the read behind such a page)."""

    lane: ListingLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.lane
        # FastAPI's own (private) telemetry hook, absent from releases before it existed
        telemetry = getattr(self, "_native_telemetry", None)
        if (
            lane is None
            or scope["type"] != "http"
            # while OpenTelemetry observes the app, every request goes through it
            or (telemetry is not None and telemetry.enabled())
            or not await lane.answered(scope, send)
        ):
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, loopback: bool = False) -> FastAPI:
    """The API app on ``settings`` (default: from the environment), with the web UI at ``/``.

    ``loopback``: the server listens on a loopback address only; then only loopback Host
    names are served, and on the embedded default requests need no key while none exists.
    On the embedded default the app runs the in-process worker while it serves.
    """
    settings = settings or Settings.from_env()
    resources.configure(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        feed = EventFeed(hub, resources.database)
        feed.start()  # before the embedded worker opens connections of its own
        served = None  # the embedded worker serves this process's metrics itself
        if settings.is_embedded:
            embedded_worker.start()
        elif settings.metrics_port is not None:
            served = metrics.serve_beside(settings.metrics_port, resources.database)
        yield
        metrics.stop(served)
        feed.stop()
        if reader is not None:
            await reader.close()

    app = Api(
        title="attune",
        version=__version__,
        summary="Run pack actions on Celery workers; every execution recorded in SQL.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,  # Swagger UI would load from a CDN; the spec is served instead
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = resources.database
    reader = None if resources.database.is_sqlite else AsyncReader(resources.database)
    app.state.reader = reader
    app.state.access = Access(resources.database, settings.is_embedded and loopback)
    app.state.loopback = loopback
    problems.install(app)
    app.add_middleware(Guard, loopback=loopback)
    app.lane = ListingLane(app.state, loopback=loopback)  # applies the guard's checks itself
    # streams before executions: /executions/{id}/output/stream is not an /output/{name}
    for module in (health, catalog, streams, executions, workers, webhooks):
        app.include_router(module.router, prefix=PREFIX)
    site.install(app)  # the web UI at /, after the API so /api/v1 stays the API's
    return app
