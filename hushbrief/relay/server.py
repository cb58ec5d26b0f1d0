"""Running the relay: the uvicorn configuration that keeps client addresses out of the logs.

The relay knows the bot's IP address (DESIGN.md §1) and must not leak it further. Uvicorn's
defaults would: its access log writes every client's address, and with ``proxy_headers``
it would trust X-Forwarded-For from loopback peers. ``build_server`` turns both off (the
access log for good: see the comment there), drops the Server header, disables WebSockets,
and otherwise leaves the process's logging configuration to the caller.

Uvicorn itself handles SIGINT/SIGTERM: it stops accepting, lets requests in flight finish
(up to ``graceful_timeout``), runs the app's lifespan shutdown (which closes the
connections to the gateway), then re-raises the signal with the default handler, so a
service manager sees the usual signal exit.
"""

from __future__ import annotations

import contextlib
import logging
import math

import httpx
import uvicorn

from hushbrief.relay.app import create_app
from hushbrief.relay.settings import RelaySettings


def build_server(settings: RelaySettings, host: str, port: int, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 graceful_timeout: float | None = None) -> uvicorn.Server:
    """A uvicorn server for the relay, not yet started (``await server.serve()``).

    ``graceful_timeout`` is how long shutdown waits for requests in flight; by default as
    long as one gateway exchange may take (``settings.timeout``).
    """
    # access_log=False below only empties the "uvicorn.access" logger's handlers, and uvicorn
    # logs access lines whenever that logger has any handler at all, so a handler added
    # later (pytest's log capture does exactly that) would bring the client addresses back.
    # A level above CRITICAL silences it whatever handlers it gets.
    logging.getLogger("uvicorn.access").setLevel(logging.CRITICAL + 1)
    # Uvicorn's TRACE level logs every connection's peer address; never go below DEBUG.
    error_log = logging.getLogger("uvicorn.error")
    if error_log.getEffectiveLevel() < logging.DEBUG:
        error_log.setLevel(logging.DEBUG)
    config = uvicorn.Config(
        create_app(settings, transport=transport),
        host=host,
        port=port,
        access_log=False,  # it logs client addresses
        proxy_headers=False,  # never take a client address from X-Forwarded-For
        server_header=False,
        ws="none",
        lifespan="on",
        log_config=None,  # the caller (the CLI) configures logging
        timeout_graceful_shutdown=math.ceil(
            settings.timeout if graceful_timeout is None else graceful_timeout),
    )
    return uvicorn.Server(config)


async def serve(settings: RelaySettings, host: str, port: int) -> None:
    """Serve the relay on ``host:port`` until SIGINT or SIGTERM, then shut down gracefully."""
    await build_server(settings, host, port).serve()


def run(settings: RelaySettings, host: str, port: int) -> None:
    """Blocking ``serve``, for the CLI. Returns normally after Ctrl-C."""
    # Uvicorn re-raises SIGINT after its graceful shutdown; by then all is done.
    with contextlib.suppress(KeyboardInterrupt):
        build_server(settings, host, port).run()
