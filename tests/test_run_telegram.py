"""``hushbrief run`` as an operator runs it: a process, a config file, Telegram on loopback.

The Bot API is emulated (Telegram's servers are out of reach); python-telegram-bot's
real HTTP client talks to it. Summaries go through a real relay to a real dev backend
whose build is published in a transparency log, so this is the whole product in one
scenario: opt-in, a group and a forum topic, a member who did not opt in, a
``RetryAfter`` and a network error on the way, a clean shutdown on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hushbrief.backend.devbuild import published_dev_backend
from hushbrief.relay import RelaySettings
from hushbrief.relay import create_app as relay_app
from tests.fake_telegram import FakeTelegram
from tests.servers import serve

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def private_path(tmp_path: Path) -> Iterator[dict[str, str]]:
    dev = published_dev_backend(tmp_path, origin="run.hushbrief.invalid/log")
    with serve(dev.app) as backend_url, \
            serve(relay_app(RelaySettings(gateway_url=backend_url))) as relay_url:
        yield {"relay_url": relay_url, "log_origin": dev.log.origin,
               "log_key": dev.log.verifier.key_string}


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram()
    with fake.running():
        yield fake


def start_bot(tmp_path: Path, telegram: FakeTelegram,
              private: dict[str, str]) -> subprocess.Popen[str]:
    config = tmp_path / "hushbrief.toml"
    config.write_text(f"""
[storage]
data_dir = "data"

[processing]
mode = "private"
relay_url = "{private['relay_url']}"

[attestation]
allow_dev = true
log_origin = "{private['log_origin']}"
log_key = "{private['log_key']}"

[telegram]
enabled = true
token = "{telegram.token}"
api_base_url = "{telegram.api_base_url}"
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHBRIEF_")}
    return subprocess.Popen(
        [sys.executable, "-m", "hushbrief.cli", "-v", "run", "--config", str(config)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_hushbrief_run_serves_a_group_and_a_topic_through_the_private_path(
    tmp_path: Path, telegram: FakeTelegram, private_path: dict[str, str]
) -> None:
    proc = start_bot(tmp_path, telegram, private_path)
    try:
        alice, bob, carol = (telegram.user(n, username=n.lower())
                             for n in ("Alice", "Bob", "Carol"))
        group = telegram.group("Release crew")
        forum = telegram.group("Forum crew", forum=True)
        for member in (alice, bob):
            await telegram.wait_reply(group, telegram.say(group, member, "/optin"),
                                      timeout=30)
        telegram.say(group, alice, "Shall we move the release to Friday?")
        telegram.say(group, bob, "Friday works for me, I will update the changelog tonight.")
        telegram.say(group, carol, "canary-carol: my locker code is 4711")
        # Telegram asks the bot to slow down, and the network drops once, on the way.
        telegram.fail_next("sendMessage", kind="retry_after", retry_after=1)
        telegram.fail_next("getUpdates", kind="disconnect")
        ask = telegram.say(group, alice, "/summarize")
        summary = await telegram.wait_reply(group, ask, timeout=30)
        assert "Friday" in summary.text and "changelog" in summary.text
        assert "Alice" in summary.text and "Bob" in summary.text
        assert "1 message was left out" in summary.text
        assert "4711" not in summary.text and "Carol" not in summary.text
        assert "reached through the relay" in summary.text
        assert any(kind == "retry_after" for _, kind, _ in telegram.failures_served)

        # A forum topic is its own thread.
        topic = telegram.create_topic(forum, alice, "Logo")
        for member in (alice, bob):
            await telegram.wait_reply(forum, telegram.say(forum, member, "/optin",
                                                          thread=topic), timeout=30)
        telegram.say(forum, bob, "General chat about parking permits.")
        telegram.say(forum, alice, "The new logo should be green.", thread=topic)
        telegram.say(forum, bob, "Blue matches the website better.", thread=topic)
        ask = telegram.say(forum, alice, "/summarize", thread=topic)
        topic_summary = await telegram.wait_reply(forum, ask, timeout=30)
        assert "logo" in topic_summary.text and "Blue" in topic_summary.text
        assert "parking" not in topic_summary.text
        assert proc.poll() is None, "the bot stopped"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-2000:]
    assert "stopping" in stderr
    # Nothing of the chat reached the disk or the log.
    for needle in ("Friday", "changelog", "4711", "locker", "logo", "parking", "Alice"):
        assert needle not in stderr
        for path in (tmp_path / "data").rglob("*"):
            if path.is_file():
                assert needle.encode() not in path.read_bytes(), (path, needle)


def test_run_refuses_a_configuration_without_platforms(tmp_path: Path) -> None:
    config = tmp_path / "empty.toml"
    config.write_text("[processing]\nmode = \"local\"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHBRIEF_")}
    run = subprocess.run([sys.executable, "-m", "hushbrief.cli", "run", "--config",
                          str(config)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 2
    assert "no platform is enabled" in run.stderr and len(run.stderr.splitlines()) == 1
