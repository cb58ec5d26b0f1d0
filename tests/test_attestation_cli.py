"""``hushbrief attest verify`` and ``hushbrief audit``, run as a user runs them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hushbrief.backend.devbuild import published_dev_backend
from hushbrief.relay import RelaySettings
from hushbrief.relay import create_app as relay_app
from tests.servers import serve

ROOT = Path(__file__).resolve().parent.parent
SNP = ROOT / "tests" / "data" / "evidence" / "sev-snp"
MILAN_MEASUREMENT = ("7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d"
                     "3e1a0dc39b2c60bd95b9c480cd81841f")
# Offsets in the SEV-SNP attestation report (AMD SEV-SNP ABI, ATTESTATION_REPORT).
POLICY, REPORT_DATA, MEASUREMENT, SIGNATURE = 0x08, 0x50, 0x90, 0x2A0


def hushbrief(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHBRIEF_")}
    return subprocess.run([sys.executable, "-m", "hushbrief.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
                          check=False)


def snp_document(report: bytes | None = None, **extra: object) -> dict[str, object]:
    report = report if report is not None else milan_report()
    return {
        "platform": "sev-snp",
        "evidence": base64.b64encode(report).decode(),
        "endorsements": {"vcek": base64.b64encode((SNP / "vcek_milan.der").read_bytes())
                         .decode(), "chain": (SNP / "cert_chain_milan").read_text()},
        **extra,
    }


def milan_report() -> bytes:
    return bytes.fromhex((SNP / "report_milan.hex").read_text().strip())


def attest(tmp_path: Path, doc: dict[str, object], *args: str) -> tuple[int, dict[str, object]]:
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(doc))
    run = hushbrief("attest", "verify", str(path), *args)
    return run.returncode, json.loads(run.stdout)


def test_the_milan_sample_is_valid_with_its_true_measurement(tmp_path: Path) -> None:
    code, out = attest(tmp_path, snp_document())
    assert code == 0, out
    assert out["measurement"] == MILAN_MEASUREMENT
    assert out["chain_valid"] is True and out["signature_valid"] is True
    assert out["debug"] is False and out["errors"] == [] and out["binding_ok"] is None
    assert out["tcb"] == {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}
    assert set(out) == {"platform", "chain_valid", "signature_valid", "measurement",
                        "report_data", "debug", "tcb", "binding_ok", "errors"}


def test_pinned_roots_are_used_without_a_chain(tmp_path: Path) -> None:
    doc = snp_document()
    del doc["endorsements"]["chain"]  # type: ignore[attr-defined]
    code, out = attest(tmp_path, doc)
    assert code == 0 and out["chain_valid"] is True


@pytest.mark.parametrize(("offset", "what"), [
    (0x00, "header"), (MEASUREMENT, "measurement"), (REPORT_DATA, "report data"),
    (SIGNATURE + 5, "signature"),
])
def test_tampered_copies_are_rejected(tmp_path: Path, offset: int, what: str) -> None:
    report = bytearray(milan_report())
    report[offset] ^= 0x01
    code, out = attest(tmp_path, snp_document(bytes(report)))
    assert code == 1, what
    assert out["signature_valid"] is False or out["errors"], what
    assert out["errors"]


def test_a_report_whose_policy_allows_debugging_is_rejected(tmp_path: Path) -> None:
    report = bytearray(milan_report())
    report[POLICY + 2] |= 0x08  # policy bit 19: DEBUG allowed
    code, out = attest(tmp_path, snp_document(bytes(report)))
    assert code == 1 and out["debug"] is True
    assert any("debug" in e.lower() for e in out["errors"])  # type: ignore[union-attr]


def test_binding_is_checked_when_key_configs_are_given(tmp_path: Path) -> None:
    code, out = attest(tmp_path, snp_document(key_configs=base64.b64encode(b"keys").decode()))
    assert code == 1 and out["binding_ok"] is False


def test_malformed_input_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    run = hushbrief("attest", "verify", str(path))
    assert run.returncode == 2 and run.stderr.strip().endswith("not JSON")
    code, out = attest(tmp_path, {"platform": "sgx", "evidence": ""})
    assert code == 1 and "Unknown platform" in out["errors"][0]  # type: ignore[index]


def test_bad_time_is_refused() -> None:
    run = hushbrief("attest", "verify", "x.json", "--at", "yesterday-ish")
    assert run.returncode == 2 and "not a time" in run.stderr


@pytest.fixture
def dev_deployment(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    dev = published_dev_backend(tmp_path, origin="audit.hushbrief.invalid/log")
    config = tmp_path / "hushbrief.toml"
    config.write_text(f'[attestation]\nlog_origin = "{dev.log.origin}"\n'
                      f'log_key = "{dev.log.verifier.key_string}"\n')
    with serve(dev.app) as backend_url, \
            serve(relay_app(RelaySettings(gateway_url=backend_url))) as relay_url:
        yield relay_url, config


def test_audit_of_a_dev_backend_fails_unless_dev_is_allowed(
    dev_deployment: tuple[str, Path]
) -> None:
    url, config = dev_deployment
    refused = hushbrief("audit", url, "--config", str(config))
    assert refused.returncode == 1
    assert "[FAILED] platform: Platform dev refused" in refused.stdout
    assert "Result: FAILED" in refused.stdout

    allowed = hushbrief("audit", url, "--config", str(config), "--allow-dev")
    assert allowed.returncode == 0, allowed.stdout
    for step in ("fetch", "bundle", "platform", "evidence", "binding", "measurement", "log",
                 "consistency", "served-keys"):
        assert f"[ok] {step}:" in allowed.stdout
    assert "Result: every check passed." in allowed.stdout

    as_json = json.loads(hushbrief("audit", url, "--config", str(config), "--allow-dev",
                                   "--json").stdout)
    assert as_json["ok"] is True and as_json["platform"] == "dev"
    assert as_json["steps"][0]["name"] == "fetch"


def test_audit_of_an_unreachable_deployment() -> None:
    from tests.servers import free_port

    run = hushbrief("audit", f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 1 and "[FAILED] fetch" in run.stdout
