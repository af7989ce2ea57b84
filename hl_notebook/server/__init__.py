"""The local v4 server: a FastAPI app speaking the Humanloop v4 chat wire protocol.

Why: the hosted service is gone; this app is how notebooks get answers — offline with the ``mock``
provider, or through pass-through to real providers — and the test suite's real HTTP peer.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, AsyncIterator

from .settings import ServerSettings

if TYPE_CHECKING:  # FastAPI loads when an app is built, not when the package is imported (process.py)
    from fastapi import FastAPI

API_PREFIX = "/v4"


def create_app(settings: ServerSettings) -> FastAPI:
    """Build the app: one router per concern, store and settings on ``app.state``."""
    import asyncio

    import anyio.to_thread
    from fastapi import FastAPI

    from .fast_path import ChatServerApp
    from . import routes_admin, routes_chat, routes_feedback, routes_info, stats
    from .idempotency import InFlight
    from .errors import install_error_handlers
    from .limits import BodySizeLimit
    from .providers.upstream import Upstreams
    from .ratelimit import ProviderLimiter, parse_limits
    from .store import Store

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # chat calls run on their own limiter (routes_chat.chat_limiter); a mock latency or a slow
        # provider holds one of its threads per call. Everything else shares anyio's default pool.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.admin_threads
        routes_chat.chat_limiter(app)
        publishing = asyncio.ensure_future(app.state.stats_publisher.run()) if app.state.stats_publisher else None
        yield
        if publishing is not None:
            publishing.cancel()
        app.state.upstreams.cancel()  # pass-through calls still waiting on an upstream end now
        app.state.store.close()

    app = ChatServerApp(title="hl_notebook local Humanloop v4 server", version="4.0.1", lifespan=lifespan,
                  openapi_url=f"{API_PREFIX}/openapi.json", docs_url=f"{API_PREFIX}/docs", redoc_url=None)
    app.state.settings = settings
    app.state.store = Store(settings.db_path, experiment_seed=settings.experiment_seed)
    shared = settings.workers > 1  # state that several worker processes must agree on goes through the store
    if shared:
        from .workers import SharedInFlight

        # Idempotency-Keys of the chat calls running now, in any worker
        app.state.in_flight = SharedInFlight(app.state.store, settings.idempotency_wait + settings.upstream_timeout)
    else:
        app.state.in_flight = InFlight()  # Idempotency-Keys of the chat calls running now
    # budgets per provider key (--provider-limits), their timelines shared through the store
    app.state.provider_limiter = ProviderLimiter(parse_limits(settings.provider_limits), app.state.store,
                                                 ceiling=settings.worker_threads)
    app.state.upstreams = Upstreams(settings.upstream_timeout,  # pass-through connections, cut at shutdown
                                    limiter=app.state.provider_limiter)
    install_error_handlers(app)
    app.include_router(routes_chat.router, prefix=API_PREFIX)
    app.include_router(routes_admin.router, prefix=API_PREFIX)
    app.include_router(routes_feedback.router, prefix=API_PREFIX)
    app.include_router(stats.router, prefix=API_PREFIX)
    app.include_router(routes_info.router, prefix=API_PREFIX)
    app.state.counters = stats.ChatCounters()
    app.state.stats_publisher = None
    if shared:
        from .workers import StatsPublisher

        app.state.stats_publisher = StatsPublisher(app.state.store, app.state.counters, app.state.provider_limiter)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.fast_routes = routes_chat.fast_routes(API_PREFIX)  # their usual request skips the middleware stack
    app.add_middleware(stats.CountChatRequests, counters=app.state.counters, prefix=API_PREFIX)
    if settings.faults:
        from .faults import FaultInjector, FaultSettings

        app.add_middleware(FaultInjector, settings=FaultSettings(settings.fault_rates or {}, settings.fault_seed,
                                                                settings.fault_retry_after),
                           prefix=API_PREFIX, shared_count=app.state.store.next_count if shared else None)
    return app


__all__ = ["API_PREFIX", "ServerSettings", "create_app"]
