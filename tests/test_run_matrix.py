"""``hushbrief run`` on Matrix as an operator runs it: a process, a config file, a real Synapse.

The bot joins an encrypted room it was invited to by an allowed user, answers
``!optin`` and ``!summarize`` with an encrypted summary made through the relay
and an attested dev backend, leaves out a member who did not opt in,
summarizes a thread on its own, and afterwards its data directory (nio's
crypto store included) holds none of the messages' texts.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nio
import pytest

from tests.synapse import SynapseServer
from tests.test_matrix import Person, _canary, _files_containing, _is_hello, _join, _room
from tests.test_run_telegram import private_path  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bot_process(
    synapse: SynapseServer, tmp_path: Path, private_path: dict[str, str]  # noqa: F811
) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    name = f"hushbrief-{secrets.token_hex(3)}"
    account = synapse.register_account(name)
    config = tmp_path / "hushbrief.toml"
    config.write_text(f"""
[storage]
data_dir = "data"

[processing]
mode = "private"
relay_url = "{private_path['relay_url']}"

[attestation]
allow_dev = true
log_origin = "{private_path['log_origin']}"
log_key = "{private_path['log_key']}"

[matrix]
enabled = true
homeserver = "{synapse.base_url}"
user_id = "{account.user_id}"
allowed_inviters = [":{synapse.server_name}"]
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUSHBRIEF_")}
    env["HUSHBRIEF_MATRIX_PASSWORD"] = account.password
    proc = subprocess.Popen(
        [sys.executable, "-m", "hushbrief.cli", "-v", "run", "--config", str(config)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield account.user_id, proc, tmp_path / "data"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
async def test_hushbrief_run_in_an_encrypted_room(
    synapse: SynapseServer, matrix_clients: Any,
    bot_process: tuple[str, subprocess.Popen[str], Path],
) -> None:
    bot_id, proc, data_dir = bot_process
    tag = secrets.token_hex(3)
    alice, bob, carol = [Person(await matrix_clients(f"{who}-{tag}"))
                         for who in ("alice", "bob", "carol")]
    room = await _room(alice, encrypted=True, invite=[bot_id, bob.user_id, carol.user_id])
    await alice.wait_for(room, _is_hello(bot_id), timeout=60)  # joined and said hello
    for person in (bob, carol):
        await _join(person, room)
    for person in (alice, bob):
        assert "Thanks" in await person.ask(room, "!optin", bot_id)

    said = {k: _canary(k) for k in ("a", "b", "c", "root", "t1", "t2")}
    await alice.say(room, f"Shall we move the release to Friday {said['a']}?")
    await bob.say(room, f"Friday works, I will update the changelog tonight {said['b']}.")
    await carol.say(room, f"My locker code is 4711 {said['c']}.")
    command = await alice.say(room, "!summarize")
    answer = await alice.answer(room, command, bot_id)
    assert answer.decrypted and isinstance(answer, nio.RoomMessageNotice)
    summary = str(answer.body)
    assert said["a"] in summary and said["b"] in summary, summary
    assert said["c"] not in summary and "4711" not in summary
    assert "1 message was left out" in summary and "reached through the relay" in summary

    root = await alice.say(room, f"Which trail do we hike on day two {said['root']}?")
    await bob.say(room, f"The ridge trail has the best views {said['t1']}.", thread=root)
    await alice.say(room, f"The lake loop is easier for everyone {said['t2']}.", thread=root)
    in_thread = await alice.say(room, "!summarize", thread=root)
    threaded = str((await alice.answer(room, in_thread, bot_id)).body)
    assert said["t1"] in threaded and said["t2"] in threaded, threaded
    assert said["a"] not in threaded and said["b"] not in threaded

    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    canaries = list(said.values())
    assert _files_containing(data_dir, canaries) == []
    assert (data_dir / "matrix" / "store").is_dir()  # the crypto store was really searched
    assert not any(c in stderr for c in canaries)
