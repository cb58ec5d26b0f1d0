"""Run ASGI services on loopback inside the current event loop.

The demo starts its own relay and development backend this way, so that its
summaries travel the same encrypted path a deployment's do, without any
account or second terminal. Each service binds 127.0.0.1 on a port the kernel
picks; nothing listens beyond this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


def bind_free_port(host: str) -> socket.socket:
    """A TCP socket bound to a port the kernel picks on ``host``, ready for uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off only on sockets that
    # say they are TCP, and with Nagle on, every chunked response stalls on the peer's
    # delayed ACK (40 ms on Linux).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((host, 0))
    return sock


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the program around it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@asynccontextmanager
async def serve_on_loopback(app: Any, *, name: str = "service") -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1:<free port>; yields its base URL, stops it on exit."""
    sock = bind_free_port("127.0.0.1")
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False,
                            date_header=False, lifespan="auto")
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"loopback-{name}")
    try:
        while not server.started:
            if task.done():
                task.result()  # re-raise why it could not start
                raise RuntimeError(f"the {name} stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, timeout=10)
        finally:
            sock.close()
