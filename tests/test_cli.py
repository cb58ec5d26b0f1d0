"""The ``hushbrief`` command as a user runs it: scripted demo, summarize, db, config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = """\
alice: /optin
bob: /optin
alice: Shall we move the release to Friday?
bob: Friday works for me, I will update the changelog tonight.
carol: my locker code is 4711
alice: /summarize
"""


def hushbrief(*args: str, stdin: str = "", env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHBRIEF_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hushbrief.cli", *args], input=stdin, capture_output=True,
        text=True, timeout=120, env=full_env, cwd=cwd or ROOT, check=False,
    )


def test_scripted_demo_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "D"
    run = hushbrief("demo", "--data-dir", str(data), stdin=SCRIPT)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    summary = out[out.index("Summary"):]
    assert "Friday" in summary and "changelog" in summary
    assert "alice:" in summary and "bob:" in summary
    assert "1 message was left out" in summary
    assert "reached through the relay" in summary  # the demo's default is the private path
    assert "locker" not in out and "4711" not in out and "carol" not in out
    # Nothing but the bot's replies is printed: the script's lines are not echoed.
    assert "Shall we move" in summary and out.count("Shall we move") == 1
    # Afterwards no file under D contains any of the message texts.
    texts = [line.split(": ", 1)[1] for line in SCRIPT.splitlines()
             if not line.split(": ", 1)[1].startswith("/")]
    for path in data.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for text in texts:
                for fragment in (text, text[:12], "4711"):
                    assert fragment.encode() not in blob, (path, fragment)
    assert sorted(p.name for p in data.iterdir()) == ["hushbrief.db", "identifier.key"]
    assert (data / "identifier.key").stat().st_mode & 0o077 == 0


def test_demo_state_persists_between_runs(tmp_path: Path) -> None:
    data = tmp_path / "D"
    hushbrief("demo", "--data-dir", str(data), stdin="alice: /optin\n")
    run = hushbrief("demo", "--data-dir", str(data), stdin="alice: /status\n")
    assert "You have opted in here" in run.stdout


def test_demo_without_data_dir_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp_path)}
    run = hushbrief("demo", "--local", stdin=SCRIPT, env=env)
    assert run.returncode == 0 and "Summary" in run.stdout
    assert "Made on this bot's host" in run.stdout and "--local" in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_script_comments_and_bad_lines(tmp_path: Path) -> None:
    run = hushbrief("demo", "--data-dir", str(tmp_path / "D"),
                    stdin="# a comment\n\nthis line has no member\nbob: /help\n")
    assert run.returncode == 1
    assert "line 3: a line must look like 'member: text'" in run.stderr
    assert "/optin" in run.stdout  # the help still came: one bad line loses nothing else


def test_demo_policy_admin_and_optout(tmp_path: Path) -> None:
    script = """\
alice: /optin
bob: /optin
bob: /policy summaries off
alice: I think the new logo should be green.
bob: Blue would match the website better, I will draft both.
bob: /optout
alice: /summarize
alice: /policy summaries off
alice: /summarize
"""
    run = hushbrief("demo", "--data-dir", str(tmp_path / "D"), stdin=script)
    lines = run.stdout.splitlines()
    assert any("Only this chat's admins" in ln for ln in lines)
    summary = run.stdout[run.stdout.index("Summary"):]
    assert "logo" in summary and "Blue" not in summary and "1 message was left out" in summary
    assert "Summaries are switched off" in run.stdout


def test_summarize_plain_transcript_from_stdin() -> None:
    transcript = """\
alice: Morning! Did anyone look at the failing nightly build?
bob: Yes, the database migration test times out on the new runner.
alice: Can we raise the timeout or split the test?
bob: I will split it into two jobs today and ping you when it is green.
carol: ok
alice: Great, then we keep the release date on Thursday.
"""
    run = hushbrief("summarize", stdin=transcript)
    assert run.returncode == 0, run.stderr
    assert "bob:" in run.stdout and "split" in run.stdout
    assert "carol: ok" not in run.stdout


def test_summarize_reads_a_file_and_writes_nothing(tmp_path: Path) -> None:
    transcript = tmp_path / "t.txt"
    transcript.write_text("ana: The venue is booked for June.\nben: I will order the food.\n")
    before = sorted(tmp_path.rglob("*"))
    run = hushbrief("summarize", str(transcript), "--style", "paragraph", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "venue" in run.stdout
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(("stdin", "args", "message"), [
    ("", [], "hushbrief: "),
    ("{not json", ["--format", "telegram-json"], "hushbrief: "),
    ("x: y\n", ["--max-words", "3"], "--max-words must be between"),
])
def test_summarize_errors_are_one_line(stdin: str, args: list[str], message: str) -> None:
    run = hushbrief("summarize", *args, stdin=stdin)
    assert run.returncode != 0
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_summarize_missing_file() -> None:
    run = hushbrief("summarize", "/nonexistent/transcript.txt")
    assert run.returncode == 1 and "cannot be read" in run.stderr


def test_malformed_configuration_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[policy_defaults]\nlenght = 100\n")
    run = hushbrief("config", "--config", str(cfg))
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"hushbrief: {cfg}: unknown key [policy_defaults] lenght; known keys: summaries, who, "
        "consent, delivery, max_messages, max_span, buffer_messages, buffer_ttl, chat_rate, "
        "member_rate, redact, length"
    )
    run = hushbrief("db", "upgrade", "--config", str(cfg))
    assert run.returncode == 2 and "lenght" in run.stderr


def test_config_prints_effective_values_with_secrets_masked(tmp_path: Path) -> None:
    run = hushbrief("config", env={"HUSHBRIEF_TELEGRAM_TOKEN": "123:SECRET"})
    assert run.returncode == 0
    assert "token = (set)" in run.stdout and "SECRET" not in run.stdout


def test_db_upgrade_downgrade_current(tmp_path: Path) -> None:
    env = {"HUSHBRIEF_STORAGE_DATA_DIR": str(tmp_path / "d")}
    up = hushbrief("db", "upgrade", env=env)
    assert up.returncode == 0, up.stderr
    assert "revision 0002" in up.stdout
    down = hushbrief("db", "downgrade", "base", env=env)
    assert down.returncode == 0 and "base (empty)" in down.stdout
    cur = hushbrief("db", "current", env=env)
    assert "base (empty)" in cur.stdout


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = {"HUSHBRIEF_STORAGE_DATABASE_URL": "postgresql://nobody:pw@127.0.0.1:1/none"}
    run = hushbrief("db", "upgrade", env=env)
    assert run.returncode == 1
    assert len(run.stderr.strip().splitlines()) == 1 and "pw" not in run.stderr


def test_help_texts() -> None:
    for args in ([], ["demo"], ["summarize"], ["db"], ["config"], ["relay"], ["backend"]):
        run = hushbrief(*args, "--help")
        assert run.returncode == 0 and "usage: hushbrief" in run.stdout


def test_backend_and_relay_commands_serve(tmp_path: Path) -> None:
    import time

    import httpx

    from tests.servers import free_port

    backend_port, relay_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHBRIEF_")}
    procs = [
        subprocess.Popen([sys.executable, "-m", "hushbrief.cli", "backend", "--listen",
                          f"127.0.0.1:{backend_port}", "--platform", "dev"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
        subprocess.Popen([sys.executable, "-m", "hushbrief.cli", "relay", "--listen",
                          f"127.0.0.1:{relay_port}", "--gateway",
                          f"http://127.0.0.1:{backend_port}"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
    ]
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                keys = httpx.get(f"http://127.0.0.1:{relay_port}/.well-known/ohttp-gateway")
                if keys.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "relay and backend did not come up"
            time.sleep(0.2)
        assert keys.headers["content-type"] == "application/ohttp-keys"
        bundle = httpx.get(f"http://127.0.0.1:{relay_port}/attestation").json()
        assert bundle["platform"] == "dev"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)


@pytest.mark.parametrize(("args", "message"), [
    (["relay", "--listen", "nonsense", "--gateway", "http://127.0.0.1:1"], "--listen"),
    (["relay", "--listen", "127.0.0.1:1", "--gateway", "ftp://x"], "Gateway URL"),
    (["backend", "--listen", "127.0.0.1:99999"], "--listen"),
    (["backend", "--listen", "127.0.0.1:1", "--rotate-every", "soon"], "--rotate-every"),
])
def test_service_commands_reject_bad_arguments_in_one_line(args: list[str], message: str) -> None:
    run = hushbrief(*args)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1
