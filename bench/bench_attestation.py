"""Attestation cost: verification cold and cached, per platform and end to end.

Prints numbers; asserts nothing.

* Each platform verifier on the real samples (SEV-SNP Milan, Nitro, TDX) and on a
  dev bundle: the first call in a fresh process (cold: roots loaded, every
  signature checked) and the median of repeated calls (warm).
* The whole bundle check the bot runs before sending (evidence, binding,
  measurement, transparency-log inclusion, checkpoint signature).
* ``/summarize`` through relay and backend: the first one (which fetches and
  verifies the bundle) against the following ones (which reuse the cached
  verification until the bundle expires).

    python bench/bench_attestation.py
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "evidence"

COLD = """
import base64, json, sys, time
from datetime import datetime, timezone
t0 = time.perf_counter()
{body}
print(json.dumps({{"ms": (time.perf_counter() - t0) * 1000}}))
"""

SNIPPETS = {
    "sev-snp": """
from hushbrief.bot.attestation.sevsnp import verify_sev_snp
d = "{data}/sev-snp/"
v = verify_sev_snp(bytes.fromhex(open(d + "report_milan.hex").read().strip()),
                   vcek=open(d + "vcek_milan.der", "rb").read(),
                   chain=open(d + "cert_chain_milan", "rb").read(),
                   now=datetime.now(timezone.utc))
assert v.ok, v.errors
""",
    "nitro": """
from hushbrief.bot.attestation.nitro import verify_nitro
doc = base64.b64decode(open("{data}/nitro/nitro_attestation.b64").read().strip())
v = verify_nitro(doc)
assert v.signature_valid, v.errors
""",
    "tdx": """
from hushbrief.bot.attestation.tdx import verify_tdx
d = "{data}/tdx/"
v = verify_tdx(open(d + "tdx_quote", "rb").read(),
               collateral=json.load(open(d + "tdx_quote_collateral.json")),
               now=datetime(2025, 7, 1, tzinfo=timezone.utc))
assert v.signature_valid, v.errors
""",
}


def cold(platform: str) -> float:
    """First verification in a fresh interpreter, imports excluded from the timing."""
    body = SNIPPETS[platform].format(data=DATA)
    imports = "\n".join(line for line in body.splitlines() if line.startswith("from "))
    rest = "\n".join(line for line in body.splitlines() if not line.startswith("from "))
    code = imports + "\n" + COLD.format(body=rest)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["ms"])


def warm(platform: str, repeat: int = 20) -> float:
    scope: dict[str, object] = {"base64": base64, "json": json, "datetime": datetime,
                                "timezone": UTC}
    code = SNIPPETS[platform].format(data=DATA)
    exec(code, scope)  # our own snippet, run once to warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        exec(code, scope)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


async def bundle_check(repeat: int = 50) -> tuple[float, float]:
    """Dev bundle with a log proof: the whole verify_bundle, first call and median."""
    from hushbrief.backend.evidence import DevEvidenceProvider
    from hushbrief.bot.attestation.verify import AttestationPolicy, LogPolicy, verify_bundle
    from hushbrief.evidence.bundle import EvidenceBundle, ReleaseRecord
    from hushbrief.tlog.store import init

    with tempfile.TemporaryDirectory() as tmp:
        tlog = init(Path(tmp) / "log", "bench.hushbrief.invalid/log")
        for i in range(999):  # a log with some history: proofs of realistic length
            tlog.add(ReleaseRecord(f"{i:064x}", "dev", "0", "bench"))
        provider = DevEvidenceProvider({}, transparency=lambda m, p: tlog.prove(m, p))
        tlog.add(ReleaseRecord(provider.measurement, "dev", "1", "bench"))
        now = time.time()
        bundle = EvidenceBundle.from_json(provider.bundle(b"\x01" * 41, now=now,
                                                          expires_at=now + 3600))
        policy = AttestationPolicy(log=LogPolicy(tlog.origin, tlog.verifier.key_string),
                                   allow_dev=True)
        at = datetime.fromtimestamp(now, tz=UTC)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = await verify_bundle(bundle, policy, now=at)
            times.append(time.perf_counter() - t0)
            assert result.ok, result.steps
    return times[0] * 1000, statistics.median(times) * 1000


async def end_to_end(rounds: int = 10) -> tuple[float, float]:
    """/summarize through a verified dev backend: first (verifies) vs. later (cached)."""
    from hushbrief.adapters.console.chat import ConsoleChat
    from hushbrief.backend.devbuild import published_dev_backend
    from hushbrief.bot.app import open_bot
    from hushbrief.bot.config import Config
    from hushbrief.bot.events import ReplyKind
    from hushbrief.bot.policy import Processing
    from hushbrief.loopback import serve_on_loopback
    from hushbrief.relay import RelaySettings
    from hushbrief.relay import create_app as relay_app

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dev = published_dev_backend(work, origin="bench.hushbrief.invalid/log")
        tlog = dev.log
        async with serve_on_loopback(dev.app) as backend_url, \
                serve_on_loopback(relay_app(RelaySettings(gateway_url=backend_url))) as relay:
            base = Config()
            config = replace(
                base, storage=replace(base.storage, data_dir=work / "bot"),
                processing=replace(base.processing, mode=Processing.PRIVATE, relay_url=relay),
                attestation=replace(base.attestation, allow_dev=True, log_origin=tlog.origin,
                                    log_key=tlog.verifier.key_string))
            bot = open_bot(config)
            chat = ConsoleChat(core=bot.core, out=io.StringIO())
            await chat.say("alice", "/optin")
            await chat.say("alice", "/policy member_rate 1000")
            await chat.say("alice", "/policy chat_rate 1000")
            await chat.say("alice", "Something to summarize about the budget meeting.")
            times = []
            for _ in range(rounds + 1):
                t0 = time.perf_counter()
                out = await chat.say("alice", "/summarize")
                times.append(time.perf_counter() - t0)
                assert out[0].kind is ReplyKind.SUMMARY, out[0].text
            await bot.aclose()
    return times[0] * 1000, statistics.median(times[1:]) * 1000


def main() -> None:
    print(f"Python {sys.version.split()[0]}")
    print(f"{'evidence':>10} {'cold ms':>8} {'warm ms':>8}")
    for platform in ("sev-snp", "nitro", "tdx"):
        print(f"{platform:>10} {cold(platform):>8.1f} {warm(platform):>8.2f}")
    first, median = asyncio.run(bundle_check())
    print(f"whole bundle check (dev evidence + log proof, 1,000-record log): first "
          f"{first:.2f} ms, then {median:.2f} ms")
    first, cached = asyncio.run(end_to_end())
    print(f"/summarize via relay and backend: first (fetch + verify) {first:.1f} ms, "
          f"cached {cached:.1f} ms; the verification adds {first - cached:.1f} ms once per "
          "bundle lifetime")


if __name__ == "__main__":
    main()
