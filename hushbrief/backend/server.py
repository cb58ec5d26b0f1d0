"""Running the backend: the app from :func:`~hushbrief.backend.gateway.create_app` under uvicorn.

Uvicorn is configured for a service that must learn as little as possible:
no access log (it would record the relay's address, paths and timing per
request), no ``Server`` header, no ``X-Forwarded-*`` interpretation (the
backend has no use for anyone's address), and logging left to the caller
(the CLI), so uvicorn never installs handlers of its own. SIGINT/SIGTERM stop
it gracefully: requests in flight finish (up to ``graceful_shutdown``
seconds), then the lifespan stops key rotation and closes the engines.
"""

from __future__ import annotations

import asyncio

import uvicorn

from hushbrief.backend.gateway import create_app
from hushbrief.backend.settings import BackendSettings
from hushbrief.listen import parse_listen

__all__ = ["build_server", "parse_listen", "run", "serve"]

GRACEFUL_SHUTDOWN = 10




def build_server(
    settings: BackendSettings,
    *,
    host: str,
    port: int,
    platform: str = "dev",
    rotate_every: float | None = None,
    graceful_shutdown: int = GRACEFUL_SHUTDOWN,
) -> uvicorn.Server:
    """A configured, not yet started uvicorn server for the backend (tests start it themselves)."""
    app = create_app(settings, platform=platform, rotate_every=rotate_every)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        log_config=None,
        timeout_graceful_shutdown=graceful_shutdown,
    )
    return uvicorn.Server(config)


async def serve(
    settings: BackendSettings,
    *,
    host: str,
    port: int,
    platform: str = "dev",
    rotate_every: float | None = None,
) -> None:
    """Serve the backend on ``host:port`` until SIGINT/SIGTERM."""
    server = build_server(settings, host=host, port=port, platform=platform,
                          rotate_every=rotate_every)
    await server.serve()


def run(
    settings: BackendSettings,
    *,
    host: str,
    port: int,
    platform: str = "dev",
    rotate_every: float | None = None,
) -> None:
    """:func:`serve` in a fresh event loop, for the CLI."""
    asyncio.run(serve(settings, host=host, port=port, platform=platform,
                      rotate_every=rotate_every))
