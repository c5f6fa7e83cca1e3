"""The keeper's wire: what a run (deploy/remote/kept.py) and its keeper (deploy/remote/keeper.py)
say to each other over the keeper's Unix socket, named once for both ends.

One JSON object per line each way. A request names what it asks in "do"; every answer is
{"ok": true, "result": …} or {"ok": false, "error": …}, the error in deploy.errors' wire format
(to_wire, from_wire).
"""

from __future__ import annotations

import enum
import json
import os
import socket
import struct
from typing import Any

from deploy.errors import DeployError, to_wire


class Do(enum.StrEnum):
    """What a request asks of the keeper."""

    HELLO = "hello"  # are you there? (answered at once, whatever the hosts do)
    RETIRE = "retire"  # a keeper with newer pins or settings took over: end once no run uses you
    STOP = "stop"  # `invoke disconnect`: close every connection now, then answer
    OPEN = "open"  # this run's environment and host: connect (or reuse the kept connection)
    CALL = "call"  # one agent step ("op" and its "request")
    PUT = "put"  # send a local file to the host
    GET = "get"  # fetch a file of the host into a local file
    CLOSE = "close"  # this run is done with the connection; the keeper keeps it


def line(message: dict[str, Any]) -> bytes:
    return (json.dumps(message) + "\n").encode()


def request(do: Do, **fields: Any) -> bytes:
    return line({"do": do.value, **fields})


def ok(result: Any) -> bytes:
    return line({"ok": True, "result": result})


def failed(exc: DeployError) -> bytes:
    return line({"ok": False, "error": to_wire(exc)})


def try_connect(path: os.PathLike[str] | str) -> socket.socket | None:
    """A connection to whatever listens at `path`, or None when nothing does."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(os.fspath(path))
    except OSError:
        client.close()
        return None
    return client


def peer(conn: socket.socket) -> tuple[int, int]:
    """The other end's pid and uid (for a client, the keeper's: the process that listens)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return 0, os.getuid()  # elsewhere the folder's mode is the only guard
    pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return int(pid), int(uid)
