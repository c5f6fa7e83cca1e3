"""Host replies are checked against the shape their step reads, and host text is shown inert."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from deploy.errors import HostError
from deploy.remote import replies
from deploy.remote.bundle import AGENT
from deploy.remote.replies import check, envelope, failure
from deploy.render import inert, inert_lines

HOST = "deploy@app1"
RELEASE = "0123456789ab"
OTHER = "ba9876543210"
DIGEST = "f" * 64
TOKEN = "00ff00ff00ff00ff"
OWNER = {"user": "ann", "machine": "laptop", "pid": 42, "since": "2026-01-01T00:00:00Z", "token": TOKEN,
         "action": "deploy"}
PROBE: dict[str, Any] = {
    "tags": ["manylinux_2_17_x86_64", "linux_x86_64"],
    "markers": {"python_version": "3.11", "sys_platform": "linux"},
    "python": {"implementation": "cpython", "version": "3.11", "platform": "linux", "machine": "x86_64"},
    "current": RELEASE, "previous": None, "releases": [OTHER, RELEASE], "store": [DIGEST], "lock": None,
    "free_bytes": 10**12,
}
MANIFEST = {"release": RELEASE, "app": {"name": "demoapp", "version": "1.0"}, "git": None,
            "built_at": "2026-01-01T00:00:00Z", "python": "cpython 3.11 on linux-x86_64",
            "wheels": [{"filename": "a-1.0-py3-none-any.whl", "name": "a", "version": "1.0", "sha256": DIGEST,
                        "size": 10}]}
# One well-formed result per step, as the agent sends them.
GOOD: dict[str, dict[str, Any]] = {
    "probe": PROBE,
    "lock": {"broke": OWNER, "probe": PROBE},
    "unlock": {},
    "stage": {"reused": False, "linked": 3},
    "switch": {"previous": OTHER, "switched": True, "restart": 1, "switched_back": True,
               "restart_output": "boom", "pruned": [OTHER]},
    "abort": {},
    "read": {"text": None},
    "status": {"current": RELEASE, "previous": OTHER, "lock": OWNER,
               "log": [{"action": "deploy", "release": RELEASE, "result": "ok", "time": "t", "user": "ann"}],
               "releases": [{"release": RELEASE, "manifest": MANIFEST}, {"release": OTHER, "manifest": None}],
               "venv": {"installed": {"a": "1.0"}, "modified": [["a", "a/x.py", "changed"]]}},
    "ping": {},
    "hook": {"exit": 0, "output": "migrated"},
}


def refusal(op: str, reply: object) -> str:
    with pytest.raises(HostError) as caught:
        check(HOST, op, reply)
    assert caught.value.host == HOST
    message = caught.value.message
    assert "\n" not in message
    return message


def changed(op: str, path: str, value: object) -> dict[str, Any]:
    """GOOD[op] with the value at a dotted path replaced (or removed, for value=...)."""
    reply = copy.deepcopy(GOOD[op])
    *parents, last = path.split(".")
    node: Any = reply
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return reply


@pytest.mark.parametrize("op", sorted(GOOD))
def test_a_well_formed_reply_of_every_step_passes_and_comes_back_as_sent(op: str) -> None:
    assert check(HOST, op, GOOD[op]) == GOOD[op]


def test_every_step_the_agent_answers_has_a_shape() -> None:
    assert set(replies.RESULTS) == set(GOOD)


def test_the_real_agents_replies_pass_their_checks(tmp_path: Path) -> None:
    """What the agent sent to hosts really answers, on an empty deploy path and under a lock."""
    agent: dict[str, Any] = {"__name__": "pinship-test"}
    exec(compile(AGENT, "pinship-agent", "exec"), agent)
    ops = agent["OPS"]
    path = str(tmp_path / "srv")
    check(HOST, "probe", ops["probe"]({"path": path}))
    check(HOST, "lock", ops["lock"]({"path": path, "owner": OWNER}))
    check(HOST, "status", ops["status"]({"path": path}))
    check(HOST, "read", ops["read"]({"path": path, "file": "deploy.log"}))
    check(HOST, "abort", ops["abort"]({"path": path, "token": TOKEN, "release": None, "log": {}}))
    check(HOST, "ping", ops["ping"]({}))


@pytest.mark.parametrize(
    ("op", "path", "value", "expected"),
    [
        ("probe", "python", ..., "result.python: missing"),
        ("probe", "python.version", 3.11, "result.python.version: expected a version like 3.11, got 3.11"),
        ("probe", "markers", "linux", 'result.markers: expected a mapping, got "linux"'),
        ("probe", "markers.python_version", 3, 'result.markers["python_version"]: expected a string, got 3'),
        ("probe", "tags", "linux_x86_64", 'result.tags: expected a list, got "linux_x86_64"'),
        ("probe", "tags.1", None, "result.tags[1]: expected a word of letters, digits and _, got null"),
        ("probe", "tags.0", "--index-url=http://x", 'result.tags[0]: expected a word of letters, digits and _, got "-'),
        ("probe", "python.machine", "x86 64", 'result.python.machine: expected a word of letters, digits and _'),
        ("probe", "store.0", "../../etc", 'result.store[0]: expected a sha256 (64 lowercase hex digits), '
         'got "../../etc"'),
        ("probe", "current", "../..", 'result.current: expected a release id (12 lowercase hex digits), got "../.."'),
        ("probe", "previous", RELEASE.upper(), "result.previous: expected a release id"),
        ("probe", "releases.0", "", 'result.releases[0]: expected a release id (12 lowercase hex digits), got ""'),
        ("probe", "lock", "held", 'result.lock: expected a mapping, got "held"'),
        ("probe", "lock", {"user": ["x"]}, "result.lock.user: expected a string, got a list of 1 items"),
        ("probe", "free_bytes", True, "result.free_bytes: expected a whole number of at least 0, got true"),
        ("probe", "free_bytes", -1, "result.free_bytes: expected a whole number of at least 0, got -1"),
        ("probe", "free_bytes", 1.5, "result.free_bytes: expected a whole number of at least 0, got 1.5"),
        ("lock", "probe.store", {}, "result.probe.store: expected a list, got a mapping of 0 keys"),
        ("lock", "broke.pid", "42", 'result.broke.pid: expected a whole number, got "42"'),
        ("stage", "reused", "no", 'result.reused: expected true or false, got "no"'),
        ("switch", "switched", 1, "result.switched: expected true or false, got 1"),
        ("switch", "restart", False, "result.restart: expected a whole number, got false"),
        ("switch", "restart_output", ["x"], "result.restart_output: expected a string, got a list of 1 items"),
        ("switch", "pruned.0", "current", 'result.pruned[0]: expected a release id'),
        ("switch", "previous", ..., "result.previous: missing"),
        ("read", "text", 7, "result.text: expected a string, got 7"),
        ("status", "log", {}, "result.log: expected a list, got a mapping of 0 keys"),
        ("status", "log.0", "entry", 'result.log[0]: expected a mapping, got "entry"'),
        ("status", "log.0.time", 0, "result.log[0].time: expected a string, got 0"),
        ("status", "releases.0.release", "x/../y", 'result.releases[0].release: expected a release id'),
        ("status", "releases.1.manifest", [], "result.releases[1].manifest: expected a mapping, got a list of 0 items"),
        ("status", "releases.0.manifest.git", 5, "result.releases[0].manifest.git: expected a string, got 5"),
        ("status", "releases.0.manifest.wheels.0.sha256", "x",
         'result.releases[0].manifest.wheels[0].sha256: expected a sha256'),
        ("status", "venv.installed", [], "result.venv.installed: expected a mapping, got a list of 0 items"),
        ("status", "venv.modified.0", ["a", "b"], "result.venv.modified[0]: expected a list of 3 items"),
        ("status", "venv.modified.0.2", None, "result.venv.modified[0][2]: expected a string, got null"),
        ("status", "lock", 1, "result.lock: expected a mapping, got 1"),
    ],
)
def test_a_reply_of_the_wrong_shape_is_one_line_naming_the_host_step_and_path(
    op: str, path: str, value: object, expected: str
) -> None:
    message = refusal(op, changed(op, path, value))
    assert message.startswith(f"{HOST}: {op}: the host's reply is not what this step expects: {expected}"), message


@pytest.mark.parametrize("reply", [None, [], "ok", 0])
def test_a_result_that_is_not_a_mapping_is_refused(reply: object) -> None:
    assert "result: expected a mapping" in refusal("ping", reply)


def test_a_manifest_read_from_a_host_is_checked_by_the_same_rules() -> None:
    replies.conform(HOST, "promote", replies.MANIFEST, MANIFEST, "manifest.json")
    forged = changed("status", "releases.0.manifest.wheels.0.size", "10")["releases"][0]["manifest"]
    with pytest.raises(HostError) as caught:
        replies.conform(HOST, "promote", replies.MANIFEST, forged, "manifest.json")
    assert caught.value.message == (f"{HOST}: promote: the host's reply is not what this step expects: "
                                    'manifest.json.wheels[0].size: expected a whole number of at least 0, got "10"')


def test_a_venv_that_could_not_be_inspected_is_its_error_text() -> None:
    reply = changed("status", "venv", {"error": "no python"})
    assert check(HOST, "status", reply)["venv"] == {"error": "no python"}
    assert "result.venv.error: expected a string" in refusal("status", changed("status", "venv", {"error": 1}))


def test_keys_a_step_does_not_know_are_allowed() -> None:
    reply = {**GOOD["stage"], "from_the_future": [1, {"x": None}]}
    assert check(HOST, "stage", reply)["from_the_future"] == [1, {"x": None}]


def test_the_refusal_says_how_to_go_on() -> None:
    with pytest.raises(HostError) as caught:
        check(HOST, "probe", {})
    assert caught.value.fix is not None and "setting: python" in caught.value.fix


def test_an_offending_value_is_shown_inert_and_short() -> None:
    message = refusal("probe", changed("probe", "current", "\x1b[2J\nhost: switched" + "x" * 10_000))
    assert "\x1b" not in message and "\n" not in message
    assert '"\\x1b[2J\\nhost: switched' in message
    assert len(message) < 300


def test_a_host_chosen_key_in_a_path_is_shown_inert() -> None:
    message = refusal("probe", changed("probe", "markers", {"\x1b]0;x\x07\n": 1}))
    assert "\x1b" not in message and "\x07" not in message and "\n" not in message


# The failure envelope.


def test_a_failure_comes_back_with_its_kind_text_and_extra() -> None:
    reply = {"ok": False, "kind": "locked", "error": "locked", "extra": {"owner": OWNER}, "host": "x"}
    assert failure(HOST, reply)["extra"] == {"owner": OWNER}
    assert failure(HOST, {"ok": False, "kind": "os", "error": "No space"})["extra"] == {}


def test_a_failure_checked_without_its_step_still_names_the_host() -> None:
    with pytest.raises(HostError) as caught:
        failure(HOST, ["not", "a", "mapping"])
    assert caught.value.message == (f"{HOST}: the host's reply is not what this step expects: "
                                    "reply: expected a mapping, got a list of 3 items")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"ok": False, "error": "x"}, "reply.kind: missing"),
        ({"ok": False, "kind": "Locked!", "error": "x"}, 'reply.kind: expected a short word (a failure\'s kind), '
         'got "Locked!"'),
        ({"ok": False, "kind": "x" * 40, "error": "x"}, "reply.kind: expected a short word"),
        ({"ok": False, "kind": "stage", "error": None}, "reply.error: expected a string, got null"),
        ({"ok": False, "kind": "stage", "error": "x", "extra": []}, "reply.extra: expected a mapping"),
        ({"ok": False, "kind": "corrupt", "error": "x", "extra": {}}, "reply.extra.files: missing"),
        ({"ok": False, "kind": "corrupt", "error": "x", "extra": {"files": "a.whl"}},
         "reply.extra.files: expected a list"),
        ({"ok": False, "kind": "locked", "error": "x", "extra": {"owner": "me"}},
         "reply.extra.owner: expected a mapping"),
    ],
)
def test_a_failure_of_the_wrong_shape_is_refused(reply: dict[str, Any], expected: str) -> None:
    with pytest.raises(HostError) as caught:
        failure(HOST, reply, "stage")
    assert caught.value.message.startswith(f"{HOST}: stage: the host's reply is not what this step expects: {expected}")


def test_a_reply_line_is_checked_whole() -> None:
    assert envelope(HOST, "read", json.dumps({"ok": True, "result": {"text": "x"}, "host": "h"}))["result"] == {
        "text": "x"}
    assert envelope(HOST, "stage", json.dumps({"ok": False, "kind": "stage", "error": "e"}))["kind"] == "stage"
    for line, expected in [
        ("{", "reply: not JSON"),
        ("[" * 100_000, "reply: not JSON"),
        ("1" * 5000, "reply: not JSON"),
        ("[]", "reply: expected a mapping"),
        ('{"ok": "yes"}', "reply.ok: expected true or false"),
        ('{"ok": true}', "reply.result: missing"),
        ('{"ok": true, "result": {"text": 1}}', "result.text: expected a string"),
    ]:
        with pytest.raises(HostError) as caught:
            envelope(HOST, "read", line)
        assert f"read: the host's reply is not what this step expects: {expected}" in caught.value.message


# Inert text.


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, ünïcödé, 日本", "plain text, ünïcödé, 日本"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x00\x07\x7f", "\\x00\\x07\\x7f"),
        ("\x85\x9b", "\\x85\\x9b"),  # C1 controls: NEL, and CSI, which some terminals obey
        ("\u202eevil\u202c", "\\u202eevil\\u202c"),
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("line\u2028sep\u2029", "line\\u2028sep\\u2029"),
        ("\ud800lone", "\\ud800lone"),
        ("\U000e0001tag", "\\U000e0001tag"),
        ("back\\slash", "back\\slash"),
    ],
)
def test_inert_shows_every_control_and_invisible_character_as_an_escape(text: str, shown: str) -> None:
    assert inert(text) == shown
    inert(text).encode("utf-8")  # printable everywhere: no lone surrogate is left to crash a write


def test_inert_text_cannot_forge_a_line_of_its_own() -> None:
    forged = "boom\n127.0.0.2: switched\r127.0.0.3: switched\x1b[1A\x1b[2K"
    shown = inert(forged)
    assert shown.splitlines() == [shown]
    assert "\x1b" not in shown and "\r" not in shown


def test_inert_cuts_long_text_to_its_limit_with_an_ellipsis() -> None:
    assert inert("x" * 10) == "x" * 10
    assert inert("x" * 10, limit=10) == "x" * 10
    assert inert("x" * 11, limit=10) == "x" * 9 + "…"
    assert inert("x" * 50_000_000) == "x" * 299 + "…"
    # An escape is never cut in half.
    assert inert("abcdefgh\x1b", limit=10) == "abcdefgh…"


def test_inert_lines_gives_the_last_lines_each_inert() -> None:
    assert inert_lines("one\ntwo\x1b[2K\r\nthree\n\n", 8) == ["one", "two\\x1b[2K", "three"]
    assert inert_lines("a\rb", 8) == ["a", "b"]  # a carriage return cannot overwrite the line before
    tail = inert_lines("\n".join(str(n) for n in range(20)), 3)
    assert tail == ["… (earlier output left out)", "17", "18", "19"]
    assert inert_lines("", 3) == []
    long = inert_lines("y" * 1_000_000 + "\nlast", 2, limit=20)
    assert long[-1] == "last" and all(len(line) <= 30 for line in long)
