"""Errors and environments crossing a process boundary (issue 12): one wire format, kept as objects.

An error that crosses the keeper's socket, or an agent's failure envelope, comes back as the same
error with the same fields, named by the host the receiving side asked, printed once; what arrives
is not trusted, so a wrong shape is one line naming the host and host text stays inert. An
environment crosses as a dict its own rules check on the way back in.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from deploy.config import Environment, Host
from deploy.errors import AgentFailure, ConfigError, HostError, from_wire, host_output, to_wire
from deploy.remote.kept import KeptTarget
from deploy.remote.target import MARK, LocalTarget
from deploy.remote.wire import Do, failed

HOST = "deploy@app1:2222"


def across(exc: HostError | ConfigError, host: str = HOST) -> HostError:
    """What the other end rebuilds from `exc`, sent as JSON as the keeper sends it."""
    return from_wire(host, json.loads(json.dumps(to_wire(exc))))


def test_an_agent_failure_comes_back_with_its_kind_extra_and_fix_and_names_its_host_once() -> None:
    owner = {"user": "ci", "machine": "build1", "pid": 42, "since": "2026-12-03T18:00:00Z"}
    sent = AgentFailure(HOST, "locked", "the host is locked by ci@build1", {"owner": owner},
                        fix="wait, or --break-lock")

    back = across(sent)

    assert isinstance(back, AgentFailure)
    assert (back.host, back.kind, back.detail, back.extra, back.fix) == (
        HOST, "locked", "the host is locked by ci@build1", {"owner": owner}, "wait, or --break-lock")
    assert str(back) == str(sent) == f"{HOST}: the host is locked by ci@build1\n  fix: wait, or --break-lock"


def test_a_host_error_is_rebuilt_under_the_name_the_receiving_side_knows_the_host_by() -> None:
    sent = HostError("keeper", "no SSH answer within 15 s: the host hangs",
                     fix="check the host, or raise --connect-timeout")

    back = across(sent)

    assert type(back) is HostError
    assert str(back) == (f"{HOST}: no SSH answer within 15 s: the host hangs\n"
                         "  fix: check the host, or raise --connect-timeout")
    assert f"{HOST}: {HOST}" not in str(back)


def test_a_config_problem_met_while_reaching_a_host_is_that_hosts_error_with_its_fix() -> None:
    sent = ConfigError("the known-hosts file /p/known_hosts does not exist", fix="run: invoke trust --env staging")

    back = across(sent)

    assert type(back) is HostError
    assert str(back) == (f"{HOST}: the known-hosts file /p/known_hosts does not exist\n"
                         "  fix: run: invoke trust --env staging")


def test_a_failure_with_quoted_output_shows_the_same_after_any_number_of_crossings() -> None:
    output = "restart failed\n" + "\n".join(f"line {n} \x1b[31mred\x1b[0m" for n in range(12))
    made = AgentFailure(HOST, "stage", host_output(output), {"step": "healthcheck"})

    once = across(made)
    twice = across(once)

    assert once.detail == twice.detail == made.detail
    assert once.detail.splitlines()[1] == "    | … (earlier output left out)"
    assert "\x1b" not in once.detail and "line 11 \\x1b[31mred\\x1b[0m" in once.detail


@pytest.mark.parametrize("wire, problem", [
    ("boom", "not a mapping but str"),
    ({"error": "rm -rf", "detail": "x", "fix": None}, "no kind of error pinship knows"),
    ({"error": "host", "detail": ["x"], "fix": None}, "its detail is not text"),
    ({"error": "host", "detail": "x", "fix": 3}, "its fix is not text"),
    ({"error": "agent", "detail": "x", "fix": None, "kind": "Locked Now", "extra": {}},
     "an agent failure without a short word for its kind"),
    ({"error": "agent", "detail": "x", "fix": None, "kind": "locked", "extra": [1]},
     "an agent failure whose extra is not a mapping"),
])
def test_an_error_in_a_shape_pinship_never_sends_is_one_line_naming_the_host(wire: object, problem: str) -> None:
    back = from_wire(HOST, wire)

    assert type(back) is HostError
    assert back.message == f"{HOST}: an error came back in a shape pinship does not send ({problem})"
    assert back.fix is not None and "\n" not in back.message


def test_text_in_an_error_from_the_wire_cannot_draw_a_line_of_ours() -> None:
    wire = {"error": "host", "detail": "failed\x1b[2K\rapp2: switched\u202e", "fix": "run \x1b]0;owned\x07 now"}

    back = from_wire(HOST, wire)

    assert str(back) == f"{HOST}: failed\\x1b[2K\\rapp2: switched\\u202e\n  fix: run \\x1b]0;owned\\x07 now"


def test_a_local_agent_failure_envelope_is_read_into_the_same_error(tmp_path: Path) -> None:
    target = LocalTarget(Environment("local", path=str(tmp_path)), "python3")
    envelope = {"ok": False, "kind": "corrupt", "error": "2 files differ\nsite-packages/x.py\x1b[0m",
                "extra": {"files": ["site-packages/x.py"]}}

    with pytest.raises(AgentFailure) as caught:
        target._reply(MARK + json.dumps(envelope))

    assert (caught.value.kind, caught.value.extra) == ("corrupt", {"files": ["site-packages/x.py"]})
    assert str(caught.value) == "local: 2 files differ\n    | site-packages/x.py\\x1b[0m"


def staging() -> Environment:
    return Environment("staging", hosts=(Host("deploy", "app1", 2222), Host(None, "::1", 22)),
                       known_hosts="known_hosts", identity="~/.ssh/id_ed25519", healthcheck="curl -f localhost",
                       command_timeout=500, keep_alive=0)


def test_an_environment_crosses_as_json_and_comes_back_equal() -> None:
    env = staging()

    assert Environment.from_dict(json.loads(json.dumps(env.to_dict()))) == env


@pytest.mark.parametrize("change, problem", [
    ({"parallel": True}, "parallel True: expected a whole number of at least 1 and at most 1000"),
    ({"command_timeout": -5}, "command-timeout -5: expected a number of seconds above 0"),
    ({"python": "-c"}, "python -c: expected a plain non-empty string (no leading '-')"),
    ({"hosts": [{"user": "-oProxyCommand=x", "hostname": "app1", "port": 22}]}, "host {'user': '-oProxyCommand=x'"),
    ({"hosts": [{"user": None, "hostname": "app1", "port": 0}]}, "expected user, hostname and port"),
    ({"name": "../x"}, "name ../x: expected letters, digits"),
    ({"surprise": 1}, "missing nothing, unknown surprise"),
])
def test_an_environment_of_the_wrong_shape_is_one_line_saying_what_is_wrong(
        change: dict[str, Any], problem: str) -> None:
    sent = {**staging().to_dict(), **change}

    with pytest.raises(ConfigError) as caught:
        Environment.from_dict(sent)

    assert caught.value.message.startswith("an environment sent between pinship's processes is not one: ")
    assert problem in caught.value.message and "\n" not in caught.value.message


class FakeKeeper:
    """A socket that answers each request line with the next of `answers`, as a keeper would."""

    def __init__(self, folder: Path, answers: list[bytes]) -> None:
        self.path = folder / "k.sock"
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        self.server.listen(1)
        self.received: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self.serve, args=(answers,), daemon=True)
        self.thread.start()

    def serve(self, answers: list[bytes]) -> None:
        conn, _ = self.server.accept()
        with conn, conn.makefile("rb") as reader:
            for answer in answers:
                self.received.append(json.loads(reader.readline()))
                conn.sendall(answer)


def kept_target(folder: Path, answers: list[bytes]) -> tuple[KeptTarget, FakeKeeper]:
    fake = FakeKeeper(folder, answers)
    env = staging()
    return KeptTarget(env, env.hosts[0], folder, fake.path), fake


def test_a_kept_hosts_failure_is_raised_as_the_error_the_keeper_sent(tmp_path: Path) -> None:
    locked = AgentFailure("keeper", "locked", "held by ci@build1", {"owner": None}, fix="--break-lock")
    target, fake = kept_target(tmp_path, [b'{"ok": true, "result": {}}\n', failed(locked)])

    with pytest.raises(AgentFailure) as caught:
        target.call("lock")

    assert [message["do"] for message in fake.received] == [Do.OPEN, Do.CALL]
    assert Environment.from_dict(fake.received[0]["env"]) == staging()
    assert (caught.value.kind, caught.value.extra) == ("locked", {"owner": None})
    assert str(caught.value) == "deploy@app1:2222: held by ci@build1\n  fix: --break-lock"


@pytest.mark.parametrize("answer", [b"not json\n", b'{"result": {}}\n', b"[1, 2]\n"])
def test_a_keeper_answering_what_pinship_never_sends_is_one_line_naming_the_host(
        tmp_path: Path, answer: bytes) -> None:
    target, _ = kept_target(tmp_path, [answer])

    with pytest.raises(HostError) as caught:
        target.open()

    assert caught.value.message == "deploy@app1:2222: the connection keeper's answer to 'open' is not one pinship sends"
