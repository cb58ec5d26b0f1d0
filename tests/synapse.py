"""A real Synapse homeserver on loopback for tests (a pytest plugin: ``-p tests.synapse``).

    async def test_x(synapse: SynapseServer, matrix_clients: ClientFactory) -> None:
        alice = await matrix_clients("alice")          # nio.AsyncClient, logged in, E2EE on
        user_id, token = synapse.register("bob")        # shared-secret admin registration

Fixtures:

* ``synapse`` (session): one Synapse for the whole run, on SQLite, one plain-HTTP listener
  on 127.0.0.1 with the ``client`` resource only (no federation, no TLS, no media, no
  presence), open registration off, rate limits raised so tests never wait on them.
* ``matrix_clients`` (function): ``await matrix_clients(username)`` returns a logged-in
  ``nio.AsyncClient`` with its own E2EE store in the test's tmp dir; every client it made
  is closed at the end of the test, on the test's own event loop (aiohttp sessions are
  bound to the loop that opened them, so a session-scoped close would fail).

Synapse runs from its own virtualenv, never ours: its pins (Twisted, pydantic,
cryptography, ...) would fight the project's. The virtualenv lives in the user's cache dir
(``~/.cache/hushbrief/synapse-<version>-py3.11``), outside the work tree, so a fresh clone
in CI reuses it on the same machine and nothing needs a ``.gitignore`` entry. If it is
missing the fixture creates it (a wheel-only ``pip install``, about 20-30 s, bounded by
``HUSHBRIEF_SYNAPSE_INSTALL_TIMEOUT``, default 900 s) under a file lock, so two pytest
runs never install into the same directory at once. ``python -m tests.synapse`` does the
same install ahead of time (for CI warm-up) and prints the interpreter's path.

Environment:

* ``HUSHBRIEF_SKIP_SYNAPSE=1``: skip the Synapse tests (with the reason) instead of
  failing when Synapse cannot be installed or started.
* ``HUSHBRIEF_SYNAPSE_SPEC``: the pip requirement (default ``SYNAPSE_SPEC`` below).
* ``HUSHBRIEF_SYNAPSE_VENV``: use or create the virtualenv at this path instead.
* ``HUSHBRIEF_SYNAPSE_INSTALL_TIMEOUT`` / ``HUSHBRIEF_SYNAPSE_STARTUP_TIMEOUT``: seconds.

Synapse's log goes to ``homeserver.log`` in the session's tmp dir; its last lines are put
in every failure message from this module.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import pytest

if TYPE_CHECKING:  # nio is imported lazily so that loading this plugin never needs it
    from nio import AsyncClient, SyncResponse

SKIP_ENV = "HUSHBRIEF_SKIP_SYNAPSE"
SPEC_ENV = "HUSHBRIEF_SYNAPSE_SPEC"
VENV_ENV = "HUSHBRIEF_SYNAPSE_VENV"
INSTALL_TIMEOUT_ENV = "HUSHBRIEF_SYNAPSE_INSTALL_TIMEOUT"
STARTUP_TIMEOUT_ENV = "HUSHBRIEF_SYNAPSE_STARTUP_TIMEOUT"

# Pinned so that a new Synapse release cannot change test behaviour under us; bump on
# purpose. Changing it makes the fixture build a fresh virtualenv (the path has the version).
SYNAPSE_SPEC = "matrix-synapse==1.163.2"
SERVER_NAME = "localhost"
HOST = "127.0.0.1"  # loopback only, never 0.0.0.0 or ::
_MARKER = "hushbrief-synapse-installed.json"


class SynapseUnavailable(RuntimeError):
    """Synapse could not be installed or started; the message says why and what to do."""


# --------------------------------------------------------------------------- install


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def synapse_spec() -> str:
    return os.environ.get(SPEC_ENV, "").strip() or SYNAPSE_SPEC


def synapse_venv_path(spec: str | None = None) -> Path:
    """Where Synapse's own virtualenv lives: per Synapse spec and per Python minor version."""
    explicit = os.environ.get(VENV_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    spec = spec or synapse_spec()
    tag = spec.replace("matrix-synapse", "").strip("=<>!~ ,") or "latest"
    tag = "".join(c if c.isalnum() or c in ".-" else "_" for c in tag)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    py = f"py{sys.version_info.major}.{sys.version_info.minor}"
    return cache / "hushbrief" / f"synapse-{tag}-{py}"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _installed(venv: Path, spec: str) -> bool:
    try:
        marker = json.loads((venv / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return bool(marker.get("spec") == spec and _venv_python(venv).exists())


def ensure_synapse(spec: str | None = None, *, timeout: float | None = None) -> Path:
    """Install Synapse into its own virtualenv unless it is there already; return its python.

    Wheels only (``--only-binary=:all:``): Synapse publishes manylinux wheels with its Rust
    extension built in, so no compiler is needed. Falling back to an sdist would mean a
    Rust build of many minutes; failing fast with a clear message is better.
    """
    spec = spec or synapse_spec()
    timeout = timeout if timeout is not None else _env_float(INSTALL_TIMEOUT_ENV, 900.0)
    venv = synapse_venv_path(spec)
    if _installed(venv, spec):
        return _venv_python(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / f".{venv.name}.lock"
    deadline = time.monotonic() + timeout
    with lock_path.open("w") as lock:
        # Another pytest run may be installing right now: wait for it (bounded), then reuse.
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SynapseUnavailable(
                        f"timed out after {timeout:.0f}s waiting for another process to "
                        f"finish installing Synapse into {venv} (lock {lock_path})"
                    ) from None
                time.sleep(0.5)
        if _installed(venv, spec):
            return _venv_python(venv)
        # A half-built venv (killed install, changed spec at an explicit path) is removed:
        # pip would happily "succeed" on top of a broken one.
        shutil.rmtree(venv, ignore_errors=True)
        log = venv.parent / f"{venv.name}.install.log"
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [
                str(_venv_python(venv)), "-m", "pip", "install",
                "--disable-pip-version-check", "--no-input", "--only-binary=:all:", spec,
            ],
        ]
        with log.open("w") as out:
            for cmd in steps:
                left = deadline - time.monotonic()
                out.write(f"$ {' '.join(cmd)}\n")
                out.flush()
                try:
                    proc = subprocess.run(
                        cmd, stdout=out, stderr=subprocess.STDOUT, timeout=max(left, 1.0),
                        check=False, env={**os.environ, "PIP_NO_INPUT": "1"},
                    )
                except subprocess.TimeoutExpired:
                    shutil.rmtree(venv, ignore_errors=True)
                    raise SynapseUnavailable(
                        f"installing {spec} into {venv} took longer than {timeout:.0f}s "
                        f"(set {INSTALL_TIMEOUT_ENV} to allow more); log: {log}\n"
                        + _tail(log)
                    ) from None
                if proc.returncode != 0:
                    shutil.rmtree(venv, ignore_errors=True)
                    raise SynapseUnavailable(
                        f"installing {spec} into {venv} failed (exit {proc.returncode}); "
                        f"PyPI must be reachable and offer a wheel for this platform. "
                        f"Log: {log}\n" + _tail(log)
                    )
        (venv / _MARKER).write_text(json.dumps({"spec": spec, "python": sys.version}))
    return _venv_python(venv)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    # pip's "from versions: ..." line alone can run to 10 kB: cut long lines.
    return "\n".join(line if len(line) <= 400 else line[:400] + " [...]"
                     for line in text[-lines:])


# --------------------------------------------------------------------------- config


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def _signing_key() -> str:
    """A fresh ed25519 signing key in Synapse's file format: ``ed25519 <id> <seed>``.

    Written by us rather than by ``--generate-keys``, which would cost another Synapse
    start-up (about 1.5 s) for 32 random bytes.
    """
    seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return f"ed25519 a_{secrets.token_hex(2)} {seed}\n"


def _relaxed(per_second: float = 1000.0, burst: int = 10000) -> dict[str, float]:
    return {"per_second": per_second, "burst_count": burst}


def homeserver_config(workdir: Path, port: int, shared_secret: str) -> dict[str, Any]:
    """The homeserver config as a dict; written as JSON, which is valid YAML for Synapse.

    Built in Python rather than from a YAML template so that paths and secrets never need
    quoting, and no YAML library is needed on our side.
    """
    rl = _relaxed()
    return {
        "server_name": SERVER_NAME,
        "public_baseurl": f"http://{HOST}:{port}/",
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": [HOST],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                # `client` also serves /_synapse/admin (shared-secret registration).
                # No `federation`: nothing outside this machine may talk to it.
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {
            "name": "sqlite3",
            "args": {"database": str(workdir / "homeserver.db")},
        },
        "log_config": str(workdir / "log_config.yaml"),
        "signing_key_path": str(workdir / "signing.key"),
        "media_store_path": str(workdir / "media_store"),
        "report_stats": False,
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": secrets.token_urlsafe(32),
        "form_secret": secrets.token_urlsafe(32),
        "enable_registration": False,
        "allow_guest_access": False,
        # Federation is off both ways: no listener, no allowed peers, no key servers.
        "federation_domain_whitelist": [],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "presence": {"enabled": False},
        "enable_media_repo": False,
        "url_preview_enabled": False,
        "enable_metrics": False,
        # bcrypt's default 12 rounds cost ~0.25 s per registration and per login.
        "bcrypt_rounds": 4,
        # Tests log in, create rooms, invite and send in bursts; Synapse's defaults
        # (e.g. 0.2 messages/s, 5 logins per address) would make them sleep or fail.
        "rc_message": rl,
        "rc_registration": rl,
        "rc_registration_token_validity": rl,
        "rc_login": {"address": rl, "account": rl, "failed_attempts": rl},
        "rc_admin_redaction": rl,
        "rc_joins": {"local": rl, "remote": rl},
        "rc_joins_per_room": rl,
        "rc_3pid_validation": rl,
        "rc_invites": {"per_room": rl, "per_user": rl, "per_issuer": rl},
        "rc_third_party_invite": rl,
        "rc_key_requests": rl,
        "rc_room_creation": rl,
        "rc_reports": rl,
        "rc_delayed_event_mgmt": rl,
        "rc_user_directory": rl,
        "rc_profile": rl,
        "rc_presence": {"per_user": rl},
        "rc_media_create": rl,
    }


def _log_config(log_path: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                "%(request)s - %(message)s"
            }
        },
        "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter",
                                "request": ""}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(log_path),
                "filters": ["context"],
                "encoding": "utf8",
            }
        },
        # SQL at INFO is thousands of lines per test; it says nothing a failure needs.
        "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": "INFO", "handlers": ["file"]},
    }


# --------------------------------------------------------------------------- server


@dataclass
class MatrixAccount:
    localpart: str
    user_id: str
    password: str
    access_token: str
    device_id: str
    admin: bool


@dataclass
class SynapseServer:
    """A running Synapse: ``SynapseServer.start(python, workdir)``, ``stop()`` at the end."""

    python: Path
    workdir: Path
    port: int
    shared_secret: str
    process: subprocess.Popen[bytes]
    server_name: str = SERVER_NAME
    timings: dict[str, float] = field(default_factory=dict)
    accounts: dict[str, MatrixAccount] = field(default_factory=dict)
    _store_counter: Iterator[int] = field(default_factory=itertools.count)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "homeserver.log"

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)

    def user_id(self, username: str) -> str:
        return username if username.startswith("@") else f"@{username}:{self.server_name}"

    # -- lifecycle

    @classmethod
    def start(cls, python: Path, workdir: Path, *, timeout: float | None = None,
              attempts: int = 3) -> SynapseServer:
        """Write the config, start Synapse, and wait until it answers (bounded).

        The port is picked free just before start-up; Synapse cannot take a socket we
        bound ourselves, so if another process grabs the port first the start fails with
        "Address already in use" and we retry on a new port.
        """
        timeout = timeout if timeout is not None else _env_float(STARTUP_TIMEOUT_ENV, 120.0)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "signing.key").write_text(_signing_key())
        (workdir / "log_config.yaml").write_text(
            json.dumps(_log_config(workdir / "homeserver.log"), indent=1))
        shared_secret = secrets.token_urlsafe(32)
        last_error: SynapseUnavailable | None = None
        for _ in range(attempts):
            port = _free_port()
            config_path = workdir / "homeserver.yaml"
            config_path.write_text(
                json.dumps(homeserver_config(workdir, port, shared_secret), indent=1))
            began = time.monotonic()
            process = _spawn(python, config_path, workdir)
            server = cls(python=python, workdir=workdir, port=port,
                         shared_secret=shared_secret, process=process)
            try:
                server._wait_ready(timeout)
            except SynapseUnavailable as exc:
                server.stop()
                last_error = exc
                if "Address already in use" in server.log_tail(200) + _tail(
                        workdir / "stderr.log"):
                    continue
                raise
            server.timings["startup_s"] = time.monotonic() - began
            return server
        assert last_error is not None
        raise last_error

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.base_url}/_matrix/client/versions"
        with httpx.Client(timeout=2.0) as http:
            while True:
                code = self.process.poll()
                if code is not None:
                    raise SynapseUnavailable(self._explain(f"Synapse exited with code {code} "
                                                           "during start-up"))
                with contextlib.suppress(httpx.TransportError):
                    if http.get(url).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise SynapseUnavailable(self._explain(
                        f"Synapse did not answer {url} within {timeout:g}s "
                        f"(set {STARTUP_TIMEOUT_ENV} to allow more)"))
                time.sleep(0.1)

    def _explain(self, what: str) -> str:
        return (f"{what}.\nWork dir: {self.workdir}\n--- stderr ---\n"
                f"{_tail(self.workdir / 'stderr.log', 30)}\n--- {self.log_path} ---\n"
                f"{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (Synapse shuts down cleanly and flushes SQLite), then SIGKILL."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    # -- users

    def register(self, username: str, password: str | None = None,
                 admin: bool = False) -> tuple[str, str]:
        """Create a user through the shared-secret admin API; return (user_id, access_token).

        Needs no open registration and no admin user: the nonce plus an HMAC-SHA1 over
        ``nonce\\0user\\0password\\0admin|notadmin`` keyed with the shared secret.
        """
        account = self.register_account(username, password, admin=admin)
        return account.user_id, account.access_token

    def register_account(self, username: str, password: str | None = None,
                         admin: bool = False) -> MatrixAccount:
        localpart = username.removeprefix("@").split(":", 1)[0]
        password = password or secrets.token_urlsafe(16)
        url = f"{self.base_url}/_synapse/admin/v1/register"
        with httpx.Client(timeout=30.0) as http:
            nonce_resp = http.get(url)
            self._check(nonce_resp, "GET nonce")
            nonce = nonce_resp.json()["nonce"]
            mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
            mac.update(b"\x00".join([
                nonce.encode(), localpart.encode(), password.encode(),
                b"admin" if admin else b"notadmin",
            ]))
            resp = http.post(url, json={
                "nonce": nonce, "username": localpart, "password": password,
                "admin": admin, "mac": mac.hexdigest(),
            })
            self._check(resp, f"register {localpart}")
        body = resp.json()
        account = MatrixAccount(localpart=localpart, user_id=body["user_id"],
                                password=password, access_token=body["access_token"],
                                device_id=body.get("device_id", ""), admin=admin)
        self.accounts[account.user_id] = account
        return account

    def _check(self, resp: httpx.Response, what: str) -> None:
        if resp.status_code != 200:
            raise SynapseUnavailable(self._explain(
                f"{what}: HTTP {resp.status_code} {resp.text[:500]}"))

    # -- nio

    async def client(self, username: str, *, password: str | None = None,
                     store_path: Path | None = None, device_name: str = "hushbrief-test",
                     register: bool = True) -> AsyncClient:
        """A logged-in nio ``AsyncClient`` with E2EE on and its one-time keys uploaded.

        Registers ``username`` first if this server has not seen it. Each call logs in a
        NEW device with a fresh store dir (unless ``store_path`` is given), like a bot's
        first start. The caller closes it (``await client.close()``), or uses the
        ``matrix_clients`` fixture, which does.

        Keys are uploaded here rather than left to the first sync so that other users'
        clients can find this device, and share room keys with it, before it ever syncs.
        """
        from nio import AsyncClient, AsyncClientConfig, KeysUploadError, LoginResponse

        user_id = self.user_id(username)
        account = self.accounts.get(user_id)
        if account is None:
            if not register:
                raise KeyError(f"{user_id} was not registered through this harness")
            account = self.register_account(username, password)
        if store_path is None:
            store_path = (self.workdir / "nio-stores"
                          / f"{account.localpart}-{next(self._store_counter)}")
        store_path.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        client = AsyncClient(self.base_url, user_id, store_path=str(store_path),
                             config=config)
        login = await client.login(account.password, device_name=device_name)
        if not isinstance(login, LoginResponse):
            await client.close()
            raise SynapseUnavailable(self._explain(f"nio login of {user_id}: {login}"))
        if client.should_upload_keys:
            up = await client.keys_upload()
            if isinstance(up, KeysUploadError):
                await client.close()
                raise SynapseUnavailable(self._explain(f"keys upload for {user_id}: {up}"))
        return client


async def sync_once(client: AsyncClient, *, timeout_ms: int = 0,
                    sync_filter: dict[str, Any] | None = None,
                    full_state: bool = False) -> SyncResponse:
    """One /sync, then the E2EE housekeeping that ``sync_forever`` does after each sync
    and a bare ``sync()`` does NOT: send queued to-device messages, upload one-time keys,
    query the device keys of users whose device lists changed, claim one-time keys.

    Without the key query a sender does not know a newly joined member's devices, shares
    the new room key with nobody new, and the member cannot decrypt ("no session found").
    """
    from nio import SyncResponse

    resp = await client.sync(timeout=timeout_ms, sync_filter=sync_filter,
                             full_state=full_state)
    if not isinstance(resp, SyncResponse):
        raise AssertionError(f"sync of {client.user_id} failed: {resp}")
    await client.send_to_device_messages()
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())
    return resp


def _spawn(python: Path, config_path: Path, workdir: Path) -> subprocess.Popen[bytes]:
    stderr = (workdir / "stderr.log").open("ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONUNBUFFERED"] = "1"
    try:
        return subprocess.Popen(
            [str(python), "-m", "synapse.app.homeserver", "-c", str(config_path)],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=stderr,
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        )
    finally:
        stderr.close()  # the child has its own copy of the descriptor


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM Synapse if pytest dies without running teardown
    (SIGKILL, OOM), so no orphan keeps the port and the SQLite file."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


# --------------------------------------------------------------------------- fixtures


def _unavailable(message: str) -> NoReturn:
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"Synapse unavailable ({SKIP_ENV}=1): {message}")
    pytest.fail(f"Synapse unavailable: {message}\n(set {SKIP_ENV}=1 to skip these tests "
                "instead)", pytrace=False)


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """One real Synapse for the session; fails (or skips, see HUSHBRIEF_SKIP_SYNAPSE)."""
    spec = synapse_spec()
    began = time.monotonic()
    fresh = not _installed(synapse_venv_path(spec), spec)
    # pytest.fail/skip are called outside the except blocks so that the report shows our
    # message alone, not "During handling of the above exception..." chains.
    problem = ""
    try:
        python = ensure_synapse(spec)
    except (SynapseUnavailable, OSError) as exc:
        problem = str(exc)
    if problem:
        _unavailable(problem)
    install_s = time.monotonic() - began
    try:
        server = SynapseServer.start(python, tmp_path_factory.mktemp("synapse"))
    except (SynapseUnavailable, OSError) as exc:
        problem = str(exc)
    if problem:
        _unavailable(problem)
    server.timings["install_s"] = install_s
    server.timings["install_was_cold"] = float(fresh)
    try:
        yield server
    finally:
        server.stop()


ClientFactory = Callable[..., Awaitable["AsyncClient"]]


@pytest.fixture
async def matrix_clients(synapse: SynapseServer) -> AsyncIterator[ClientFactory]:
    """``await matrix_clients("alice", **kw)`` -> logged-in E2EE ``nio.AsyncClient``.

    Same keywords as ``SynapseServer.client``; all clients are closed after the test.
    """
    made: list[AsyncClient] = []

    async def make(username: str, **kwargs: Any) -> AsyncClient:
        client = await synapse.client(username, **kwargs)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.close()


if __name__ == "__main__":  # `python -m tests.synapse`: install ahead of time
    try:
        print(ensure_synapse())
    except SynapseUnavailable as exc:
        sys.exit(str(exc))
