"""The FastAPI application: public routers, the map, static assets, error handling."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

import sunlight
from api import errors
from api.build_process import BuildProcess
from api.cache import Reuse
from api.limits import RequestLimits
from api.middleware import (
    CachingMiddleware,
    HeadAsGet,
    RateLimiter,
    RateLimitMiddleware,
    ReusedResponses,
)
from api.routers import accountability as accountability_router
from api.routers import episodes, health, regulator, sites
from api.routers import map as map_router
from api.routers import reports as reports_router
from api.routers import subscriptions as subscriptions_router
from api.server import HeadDeadline
from maps.assets import static_dirs
from store.db import open_pool
from sunlight import logs, memory
from sunlight.settings import Settings, get_settings

logger = logging.getLogger(__name__)

DESCRIPTION = """
Sunlight discloses what monitored enterprises emit, what ambient stations measure, and how
regulators respond. Read-only and open to all. Real-time values are preliminary, unvalidated
self-monitoring data; each carries its HJ 212 data flag.
"""


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = open_pool(settings.database_url, application="sunlight-api")
        # Everything alive now (modules, routes, schemas: ~130,000 objects) lives as long as
        # the process: frozen, the cyclic collector's full passes, which stop the event loop,
        # stop walking it again each time rebuilt lists add enough objects to set one off
        # (0.4–0.8 s per pass on the loaded benchmark machine, 0 once frozen).
        gc.freeze()
        # Reused responses are built in a child process, off the GIL requests are served with.
        builder = app.state.builder = BuildProcess(settings) if settings.api_build_process else None
        if builder is not None:
            builder.start()
        try:
            yield
        finally:
            if builder is not None:
                builder.close()
            app.state.pool.close()

    # FastAPIOffline: FastAPI whose /docs loads Swagger UI from the installed package (under
    # /static/, outside the rate limit), not from a CDN: the docs work on a machine without
    # internet, and readers' browsers ask no third party. No /redoc: ReDoc still fetches its
    # logo from Redocly's CDN.
    app = FastAPIOffline(
        static_url="/static/docs",
        redoc_url=None,
        title="Sunlight public API",
        version=sunlight.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        license_info={"name": "Data: CC BY 4.0"},
    )
    app.state.settings = settings
    app.state.reuse = Reuse(settings.api_cache_seconds)
    errors.install(app)
    # Outermost last. The rate limit runs before any work is done; fresh reused responses are
    # answered right after it (already compressed: gzip only wraps what is built).
    app.add_middleware(CachingMiddleware)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(ReusedResponses, reuse=app.state.reuse)
    app.add_middleware(
        RateLimitMiddleware,
        limiter=RateLimiter(settings.api_rate_limit_per_minute),
        exempt=("/healthz", "/static/"),
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.api_cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "If-None-Match"],
        expose_headers=["ETag", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"],
    )
    app.add_middleware(RequestLimits)  # oversized requests cost nothing more
    app.add_middleware(HeadAsGet)  # outermost: HEAD is GET without the body, whatever answers
    app.include_router(health.router)
    app.include_router(sites.router)
    app.include_router(map_router.router)
    app.include_router(regulator.router)
    app.include_router(episodes.router)
    app.include_router(subscriptions_router.router)
    app.include_router(accountability_router.router)
    app.include_router(reports_router.router)
    for name, directory in static_dirs().items():
        app.mount(
            f"{map_router.STATIC_PREFIX}/{name}",
            StaticFiles(directory=directory),
            name=f"static-{name}",
        )
    return app


def app_from_environment() -> FastAPI:
    """The app of one of several worker processes (``sunlight api --workers N``): each
    reads the same SUNLIGHT_* environment the command was started with."""
    settings = get_settings()
    logs.configure(settings.log_level, json_lines=settings.log_json, name="api")
    memory.return_large_blocks(settings.memory_return_threshold_kib)
    HeadDeadline.head_timeout_s = settings.api_head_timeout_s
    return create_app(settings)
