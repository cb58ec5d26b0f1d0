"""Real HTTP servers on loopback for tests: any ASGI app under uvicorn, on a free port.

    from tests.servers import serve

    with serve(app) as base_url:            # "http://127.0.0.1:54321"
        httpx.get(base_url + "/healthz")

* ``serve(app, **uvicorn_options)`` — a context manager; the server runs in a background
  thread with its own event loop, so it works from sync and async tests alike, and a
  test's own event loop can block or sleep without stalling the server.
* For a server on the test's own event loop, use ``hushbrief.loopback.serve_on_loopback``
  (what the demo uses).
* ``serve_server(server)`` — runs a ``uvicorn.Server`` you configured yourself (e.g. the
  relay's production ``build_server(...)``), ignoring its port.

The socket is bound by the helper (port 0, so the kernel picks a free port) and handed to
uvicorn, so there is no window in which another process could take the port. Uvicorn
options default to: no access log, no logging reconfiguration (pytest's ``caplog`` keeps
working), and a 2-second graceful shutdown. The server thread is named ``uvicorn-<port>``,
so a test can tell which server a captured log record came from (``record.threadName``).
On exit the server stops accepting, finishes requests in flight (up to that timeout), runs
lifespan shutdown, and is joined.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from hushbrief.loopback import bind_free_port

_DEFAULTS: dict[str, Any] = {
    "access_log": False,
    "log_config": None,
    "lifespan": "auto",
    "timeout_graceful_shutdown": 2,
}


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for "gateway is down" tests)."""
    with _bind(host) as sock:
        port: int = sock.getsockname()[1]
    return port


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.contextmanager
def serve(app: Any, *, host: str = "127.0.0.1", **uvicorn_options: Any) -> Iterator[str]:
    """Run ``app`` in a uvicorn server in a background thread; yield its base URL."""
    config = uvicorn.Config(app, host=host, port=0, **{**_DEFAULTS, **uvicorn_options})
    with serve_server(uvicorn.Server(config)) as url:
        yield url


@contextlib.contextmanager
def serve_server(server: uvicorn.Server, *, startup_timeout: float = 10.0) -> Iterator[str]:
    """Run a configured ``uvicorn.Server`` in a background thread on a free port of its host."""
    host = server.config.host
    sock = _bind(host)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # SystemExit from a failed startup, too
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"uvicorn-{sock.getsockname()[1]}",
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the test server failed to start: {failure!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start in time")
            time.sleep(0.005)
        yield base_url(host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()




_bind = bind_free_port
