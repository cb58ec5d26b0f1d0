"""``hushbrief audit`` and ``hushbrief attest verify``: the checks, for people.

``audit URL`` fetches a deployment's evidence bundle (from its relay or its
backend), runs every check the bot runs before sending anything, and prints a
transcript step by step; ``--json`` prints the same for machines. The exit
status is 0 only if every check passed.

``attest verify FILE`` checks raw platform evidence offline and prints JSON
with ``platform``, ``chain_valid``, ``signature_valid``, ``measurement``,
``report_data``, ``debug``, ``tcb``, ``binding_ok`` and ``errors``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from hushbrief.bot.attestation.dev import verify_dev
from hushbrief.bot.attestation.nitro import verify_nitro
from hushbrief.bot.attestation.sevsnp import verify_sev_snp
from hushbrief.bot.attestation.source import (
    ATTESTATION_PATH,
    AttestationFailed,
    LogConsistencyClient,
    fetch_bundle,
)
from hushbrief.bot.attestation.tdx import verify_tdx
from hushbrief.bot.attestation.verdict import PlatformVerdict
from hushbrief.bot.attestation.verify import AttestationPolicy, Step, Verification, verify_bundle
from hushbrief.bot.private import GATEWAY_PATH, PrivatePathError
from hushbrief.evidence.bundle import binding

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parse_time(value: str) -> datetime:
    """``--at``: ISO 8601 (``2025-07-01T12:00:00Z``) or Unix seconds."""
    try:
        if value.strip().lstrip("-").isdigit():
            return datetime.fromtimestamp(int(value), tz=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a time: use ISO 8601 (2025-07-01T12:00:00Z) or Unix seconds"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_commands(sub: Any, config_arg: Any) -> None:
    audit = sub.add_parser(
        "audit", help="check a deployment's evidence, step by step",
        description="Fetch the evidence bundle from a relay or a backend (URL/attestation), run "
                    "every check the bot runs before it sends anything — freshness, platform, "
                    "hardware evidence to the pinned root, key binding, measurement, "
                    "transparency-log inclusion and consistency — and print a transcript. The "
                    "policy comes from [attestation] of --config. Exit status 0 only if every "
                    "check passed.")
    audit.add_argument("url", help="the relay's or backend's base URL")
    audit.add_argument("--json", action="store_true", help="print JSON instead of text")
    audit.add_argument("--allow-dev", action="store_true",
                       help="accept dev attestation (a software stand-in: no hardware)")
    audit.add_argument("--at", type=parse_time, default=None, metavar="TIME",
                       help="check as of TIME (ISO 8601 or Unix seconds; default: now)")
    config_arg(audit)

    attest = sub.add_parser("attest", help="verify raw platform evidence offline",
                            description="Verify raw platform evidence offline.")
    attest_sub = attest.add_subparsers(dest="attest_command", required=True, metavar="ACTION")
    verify = attest_sub.add_parser(
        "verify", help="verify one evidence file and print JSON",
        description='Verify platform evidence offline. FILE is JSON: {"platform": "sev-snp", '
                    '"evidence": "<base64 report>", "endorsements": {"vcek": "<base64 DER or '
                    'PEM>", "chain": "<PEM: ASK then ARK>"}, "key_configs": "<base64, '
                    'optional>"}, {"platform": "nitro", "evidence": "<base64 COSE_Sign1>"}, or '
                    '{"platform": "tdx", "evidence": "<base64 quote>", "endorsements": '
                    '{"collateral": {...}}}. Without a chain the pinned roots are used. Prints '
                    "platform, chain_valid, signature_valid, measurement, report_data, debug, "
                    "tcb, binding_ok (null without key_configs) and errors; exit status 0 only "
                    "when everything checked is valid.")
    verify.add_argument("file", type=Path, help="the evidence file ('-' for standard input)")
    verify.add_argument("--at", type=parse_time, default=None, metavar="TIME",
                        help="verify as of TIME (ISO 8601 or Unix seconds; default: now)")
    verify.add_argument("--allow-debug", action="store_true",
                        help="do not count debug-enabled evidence as an error")


# --- attest verify ----------------------------------------------------------------------------

def run_attest_verify(args: argparse.Namespace) -> int:
    try:
        raw = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
        doc = json.loads(raw)
    except OSError as exc:
        print(f"hushbrief: {args.file}: cannot be read ({exc.strerror})", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, UnicodeDecodeError):
        print(f"hushbrief: {args.file}: not JSON", file=sys.stderr)
        return EXIT_USAGE
    now = args.at or datetime.now(tz=UTC)
    result = verify_evidence_document(doc, now=now, allow_debug=args.allow_debug)
    print(json.dumps(result, indent=2))
    return EXIT_OK if all_valid(result, allow_debug=args.allow_debug) else EXIT_FAILED


def verify_evidence_document(doc: Any, *, now: datetime, allow_debug: bool) -> dict[str, Any]:
    """The ``attest verify`` JSON for one evidence document."""
    if not isinstance(doc, dict):
        return _result(PlatformVerdict("unknown", errors=("The file is not a JSON object.",)))
    platform = doc.get("platform")
    try:
        evidence = base64.b64decode(str(doc.get("evidence", "")), validate=True)
        key_configs = (base64.b64decode(str(doc["key_configs"]), validate=True)
                       if doc.get("key_configs") else None)
    except (binascii.Error, ValueError):
        return _result(PlatformVerdict(str(platform), errors=(
            "evidence or key_configs is not valid base64.",)))
    endorsements = doc.get("endorsements") or {}
    if not isinstance(endorsements, Mapping):
        return _result(PlatformVerdict(str(platform), errors=("endorsements must be an "
                                                              "object.",)))
    verdict = _verify_platform(str(platform), evidence, endorsements, now=now,
                               allow_debug=allow_debug)
    binding_ok = None
    if key_configs is not None:
        binding_ok = verdict.report_data == binding(key_configs)
    return _result(verdict, binding_ok=binding_ok)


def _verify_platform(platform: str, evidence: bytes, endorsements: Mapping[str, Any], *,
                     now: datetime, allow_debug: bool) -> PlatformVerdict:
    if platform == "sev-snp":
        vcek_text = endorsements.get("vcek")
        vcek: bytes | None = None
        if isinstance(vcek_text, str) and vcek_text.strip():
            vcek = (vcek_text.encode() if vcek_text.lstrip().startswith("-----BEGIN")
                    else _b64(vcek_text))
        chain = endorsements.get("chain")
        return verify_sev_snp(evidence, vcek=vcek,
                              chain=chain.encode() if isinstance(chain, str) and chain else None,
                              now=now, allow_debug=allow_debug)
    if platform == "nitro":
        return verify_nitro(evidence, now=now, allow_debug=allow_debug)
    if platform == "tdx":
        collateral = endorsements.get("collateral")
        if not isinstance(collateral, Mapping):
            return PlatformVerdict("tdx", errors=("endorsements.collateral is missing.",))
        return verify_tdx(evidence, collateral=collateral, now=now, allow_debug=allow_debug)
    if platform == "dev":
        return verify_dev(evidence, endorsements)
    return PlatformVerdict(platform, errors=(
        f"Unknown platform {platform!r}: use sev-snp, tdx, nitro or dev.",))


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _result(verdict: PlatformVerdict, *, binding_ok: bool | None = None) -> dict[str, Any]:
    errors = list(verdict.errors)
    if binding_ok is False:
        errors.append("The report data does not bind the given key configurations.")
    return {
        "platform": verdict.platform,
        "chain_valid": verdict.chain_valid,
        "signature_valid": verdict.signature_valid,
        "measurement": verdict.measurement,
        "report_data": None if verdict.report_data is None else verdict.report_data.hex(),
        "debug": verdict.debug,
        "tcb": verdict.tcb,
        "binding_ok": binding_ok,
        "errors": errors,
    }


def all_valid(result: Mapping[str, Any], *, allow_debug: bool) -> bool:
    """Everything checked is valid (the ``attest verify`` exit status)."""
    return (not result["errors"] and result["chain_valid"] is True
            and result["signature_valid"] is True and result["binding_ok"] is not False
            and (result["debug"] is False or allow_debug))


# --- audit ------------------------------------------------------------------------------------

def run_audit(args: argparse.Namespace, policy: AttestationPolicy, log_url: str) -> int:
    if args.allow_dev:
        from dataclasses import replace

        policy = replace(policy, allow_dev=True)
    now = args.at or datetime.now(tz=UTC)
    steps, verification, error = asyncio.run(_audit(args.url.rstrip("/"), policy, log_url, now))
    ok = error is None and verification is not None and verification.ok and all(
        s.ok for s in steps)
    if args.json:
        print(json.dumps({
            "url": args.url, "ok": ok, "at": now.isoformat(),
            "platform": verification.bundle.platform if verification and verification.bundle
            else None,
            "measurement": verification.measurement if verification else None,
            "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in steps],
            "error": error,
        }, indent=2))
    else:
        print(f"Auditing {args.url} as of {now.strftime('%Y-%m-%d %H:%M:%S UTC')}")
        for number, s in enumerate(steps, start=1):
            print(f"{number:>2}. [{'ok' if s.ok else 'FAILED'}] {s.name}: {s.detail}")
        if error:
            print(f"    {error}")
        print("Result: every check passed." if ok else "Result: FAILED — a bot would send "
                                                       "nothing to this deployment.")
    return EXIT_OK if ok else EXIT_FAILED


async def _audit(url: str, policy: AttestationPolicy, log_url: str,
                 now: datetime) -> tuple[list[Step], Verification | None, str | None]:
    steps: list[Step] = []
    async with httpx.AsyncClient(timeout=30.0, trust_env=False,
                                 follow_redirects=False) as client:
        try:
            bundle = await fetch_bundle(client, url + ATTESTATION_PATH)
        except (AttestationFailed, PrivatePathError) as exc:
            steps.append(Step("fetch", False, str(exc)))
            return steps, None, None
        steps.append(Step("fetch", True, f"Fetched the {bundle.platform} evidence bundle "
                                         f"from {url}{ATTESTATION_PATH}."))
        verification = await verify_bundle(
            bundle, policy, now=now, checkpoints=None, remember=False,
            fetch_consistency=LogConsistencyClient(client, log_url) if log_url else None)
        steps.extend(verification.steps)
        if verification.ok:
            steps.append(await _served_keys_match(client, url, bundle.key_configs))
    return steps, verification, None


async def _served_keys_match(client: httpx.AsyncClient, url: str, bound: bytes) -> Step:
    """The key configurations the gateway serves are the ones the evidence binds."""
    try:
        resp = await client.get(url + GATEWAY_PATH)
    except httpx.HTTPError as exc:
        return Step("served-keys", False, f"The key configurations could not be fetched "
                                          f"({type(exc).__name__}).")
    if resp.status_code != 200:
        return Step("served-keys", False, f"The key configurations answer {resp.status_code}.")
    if resp.content != bound:
        return Step("served-keys", False, "The gateway serves other key configurations than "
                                          "the evidence binds (it may just have rotated: "
                                          "audit again).")
    return Step("served-keys", True, "The gateway serves exactly the bound key "
                                     "configurations.")
