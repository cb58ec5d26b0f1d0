"""The Oblivious HTTP relay (RFC 9458 §5, §6.2): forwards ciphertext to one gateway.

It sees the bot's address, ciphertext, sizes and timing — never plaintext or keys. By
construction it cannot decrypt: an import contract keeps ``hushbrief.ohttp``, ``pyhpke``,
``cryptography``, the bot and the backend out of this package.

Modules: ``settings`` (configuration), ``app`` (the ASGI application and
its routes), ``upstream`` (the one exchange with the gateway), ``metrics`` (counts, sizes,
latencies), ``server`` (uvicorn, with the access log off), ``errors`` (the exception tree).
"""

from hushbrief.listen import parse_listen
from hushbrief.relay.app import RelayApp, create_app
from hushbrief.relay.errors import RelayError, SettingsError
from hushbrief.relay.server import build_server, run, serve
from hushbrief.relay.settings import RelaySettings

__all__ = [
    "RelayApp",
    "RelayError",
    "RelaySettings",
    "SettingsError",
    "build_server",
    "create_app",
    "parse_listen",
    "run",
    "serve",
]
