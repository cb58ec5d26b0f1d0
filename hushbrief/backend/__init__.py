"""The attested backend: an OHTTP gateway (RFC 9458) in front of the summarization engines.

It sees the plaintext of one request at a time, with pseudonymous speakers,
and never the bot's address, chat or user identifiers or names (DESIGN.md §1);
it keeps nothing of a request once it has answered (§7, invariant 9).

Modules:

* :mod:`~hushbrief.backend.gateway` — the ASGI app: key configurations, the
  gateway endpoint, the evidence bundle, health (``create_app``)
* :mod:`~hushbrief.backend.inner` — the router and ``POST /v1/summarize`` inside
  the encapsulation; :mod:`~hushbrief.backend.schema` — its JSON
* :mod:`~hushbrief.backend.keys` — in-memory HPKE keys and their rotation
* :mod:`~hushbrief.backend.replay` — Date check and ``enc`` register (RFC 9458 §6.5)
* :mod:`~hushbrief.backend.evidence` — evidence bundles behind ``EvidenceProvider``
* :mod:`~hushbrief.backend.workers` — engines in worker threads, admission limits
* :mod:`~hushbrief.backend.openai_engine` — any OpenAI-compatible model server
* :mod:`~hushbrief.backend.settings` — the ``[backend]`` configuration section
* :mod:`~hushbrief.backend.server` — uvicorn (``serve``, ``run``)
* :mod:`~hushbrief.backend.errors` — the exception tree
"""

from hushbrief.backend.gateway import create_app
from hushbrief.backend.server import parse_listen, run, serve
from hushbrief.backend.settings import BackendSettings, load_backend_settings

__all__ = [
    "BackendSettings",
    "create_app",
    "load_backend_settings",
    "parse_listen",
    "run",
    "serve",
]
