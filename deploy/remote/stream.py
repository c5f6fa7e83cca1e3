"""Files to and from a host without SFTP, over an exec channel of the same connection, for hosts
whose sshd has no `Subsystem sftp` line (deploy/remote/ssh.py falls back to this when the host
refuses the subsystem).

The host's own Python (the one the agent runs on: nothing else is assumed there, not even `cat`)
copies stdin to the file, or the file to stdout. The file's name is the only argument, quoted;
the program is fixed. A copy that fails removes what it wrote: a partial upload would otherwise
keep a disk full for the clean-up that follows. What the host prints back is untrusted text.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import paramiko

# Python 3.8+ as on every host; -I -S as for the agent (deploy/remote/target.py agent_command).
_RECEIVE = (
    "import os,shutil,sys\n"
    "try:\n"
    " with open(sys.argv[1],'wb') as f: shutil.copyfileobj(sys.stdin.buffer,f,1<<16)\n"
    "except BaseException:\n"
    " try: os.unlink(sys.argv[1])\n"
    " except OSError: pass\n"
    " raise\n"
)
_SEND = "import shutil,sys\nwith open(sys.argv[1],'rb') as f: shutil.copyfileobj(f,sys.stdout.buffer,1<<16)\n"
_BLOCK = 1 << 16
_KEPT_OUTPUT = 4096  # of what the host says when a copy fails: its error is in the last lines


@dataclass
class Copied:
    """How a copy over an exec channel ended: the exit status and what the host printed."""

    status: int
    output: str


def send(transport: paramiko.Transport, python: str, local: Path, remote: str, timeout: float) -> Copied:
    """Write `local` to `remote` on the host through an exec channel, one block at a time."""
    channel = transport.open_session(timeout=timeout)
    try:
        channel.settimeout(timeout)
        channel.set_combine_stderr(True)
        channel.exec_command(shlex.join([python, "-I", "-S", "-c", _RECEIVE, remote]))
        try:
            with local.open("rb") as handle:
                for block in iter(lambda: handle.read(_BLOCK), b""):
                    channel.sendall(block)
            channel.shutdown_write()
        except OSError:
            if not channel.exit_status_ready():
                raise
            # The copy ended before reading it all (a folder missing, a full disk): its output says why.
        output = _drain(channel)
        return Copied(channel.recv_exit_status(), output)
    finally:
        channel.close()


def fetch(transport: paramiko.Transport, python: str, remote: str, local: Path, timeout: float) -> Copied:
    """Write the host's `remote` to `local` through an exec channel."""
    channel = transport.open_session(timeout=timeout)
    try:
        channel.settimeout(timeout)
        channel.exec_command(shlex.join([python, "-I", "-S", "-c", _SEND, remote]))
        with local.open("wb") as handle:
            for block in iter(lambda: channel.recv(_BLOCK), b""):
                handle.write(block)
        errors = b""
        while chunk := channel.recv_stderr(_BLOCK):
            errors = (errors + chunk)[-_KEPT_OUTPUT:]
        return Copied(channel.recv_exit_status(), errors.decode("utf-8", "replace"))
    finally:
        channel.close()


def _drain(channel: paramiko.Channel) -> str:
    kept = b""
    while chunk := channel.recv(_BLOCK):
        kept = (kept + chunk)[-_KEPT_OUTPUT:]
    return kept.decode("utf-8", "replace")
