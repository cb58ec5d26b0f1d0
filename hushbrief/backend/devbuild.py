"""A development backend whose build is published in a fresh local transparency log.

The demo, the tests and the benchmarks need a backend the bot can check
exactly as it checks a deployment: evidence bound to its key, a measurement,
and that measurement's inclusion in a signed log. On the ``dev`` platform the
evidence is a software stand-in, so the bot must still be told to allow it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from starlette.applications import Starlette

from hushbrief import __version__
from hushbrief.backend.gateway import create_app
from hushbrief.backend.settings import BackendSettings
from hushbrief.evidence.bundle import ReleaseRecord
from hushbrief.tlog.store import TransparencyLog
from hushbrief.tlog.store import init as init_log


@dataclass(frozen=True)
class PublishedBackend:
    app: Starlette
    log: TransparencyLog

    @property
    def measurement(self) -> str:
        return str(self.app.state.backend.evidence.measurement)


def published_dev_backend(
    work: Path, *, origin: str = "dev.hushbrief.invalid/log",
    settings: BackendSettings | None = None, source: str = "local development build",
) -> PublishedBackend:
    """A dev backend app, a new log in ``work/log`` that holds its build, and the proof.

    The proof is written to ``work/transparency.json``, from where the backend
    serves it in every evidence bundle.
    """
    proof = work / "transparency.json"
    app = create_app(replace(settings or BackendSettings(), transparency_file=str(proof)),
                     platform="dev")
    tlog = init_log(work / "log", origin)
    measurement = str(app.state.backend.evidence.measurement)
    tlog.add(ReleaseRecord(measurement=measurement, platform="dev", version=__version__,
                           source=source))
    proof.write_text(json.dumps(tlog.prove(measurement, "dev").to_json()))
    return PublishedBackend(app, tlog)
