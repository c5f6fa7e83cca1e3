"""`nox -s lock` and `nox -s upgrade`: one joint pip-compile solve, split back into layers.

Why one solve: compiling layers bottom-up with `-c lower.txt` can fail where a joint solve
succeeds (jazzband/pip-tools#1092) and needs one resolver run per layer. Solving the union of every
layer's requirements once gives a single consistent universe; each layer's lock is then the part of
that universe its own requirements reach (read from pip-compile's `# via` graph). So a package has
the same version and hashes in every layer by construction, the deploy layer is a subset of any
layer that includes it, and a full lock costs one resolver run.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.config import Config
from deploy.errors import LockError
from deploy.lock import conflicts, network, preferences
from deploy.lock.freshness import COMPILE_OPTIONS, options_key, read_locks, stale_layers
from deploy.lock.layers import LayerGraph
from deploy.lock.layers import load as load_layers
from deploy.lock.lockfile import REGENERATE, LockFile, Pin, render
from deploy.lock.reqfile import canonical, clip, display, requirement_name
from deploy.lock.universe import describe_changes, pin_lines, read_universe, select, union

Log = Callable[[str], None]
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|AUTH|PRIVATE|SESSION", re.IGNORECASE)
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def honour_ctrl_c() -> None:
    """Make SIGINT raise KeyboardInterrupt even when this process was started with it ignored.

    A script's `cmd &` starts the command with SIGINT ignored, and Python then leaves it so: a
    `kill -INT` would do nothing, and `lock` would run on to pip's timeouts. Stopping is what the
    user asked for: the signal is honoured, and the entry point turns KeyboardInterrupt into exit 130.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class LockResult:
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    changes: dict[str, list[str]] = field(default_factory=dict)
    solved: bool = False


def lock(
    config: Config,
    *,
    upgrade: Sequence[str] = (),
    upgrade_all: bool = False,
    env: Mapping[str, str] | None = None,
    log: Log = print,
) -> LockResult:
    """Bring every layer's lock up to date; resolve only when something is stale or asked for."""
    graph = load_layers(config.root, config.requirements, config.inputs_outside)
    existing = read_locks(graph)
    wanted = _check_upgrade_names(upgrade, existing, graph)
    stale = stale_layers(config, graph, existing)
    result = LockResult()
    if not stale and not wanted and not upgrade_all:
        log(f"all {len(graph.order)} layers are up to date: {', '.join(graph.order)}")
        result.unchanged = [graph.layers[name].lock for name in graph.order]
        return result
    seeds = {} if upgrade_all else preferences.seeded(existing)
    for name, reasons in stale.items():
        if name in seeds:  # written by init from the project's own pins: a preference, not a stale lock
            reasons = [f"{display(seeds[name].path, config.root)}: {len(seeds[name].pins)} versions from before "
                       "adopting pinship, kept where the layers allow"]
        for reason in reasons:
            log(reason)
    universe = solve(config, graph, existing, upgrade=wanted, upgrade_all=upgrade_all, env=env, log=log)
    result.solved = True
    _check_every_line_locked(graph, universe, log)
    for line in preferences.report(graph, seeds, universe):
        log(line)
    header = _header()
    options = options_key(config)
    texts: dict[str, tuple[str, int]] = {}
    for name in graph.order:
        layer = graph.layers[name]
        pins = select(graph, name, universe)
        text = render(header, graph.input_digests(name, options), pins)
        result.changes[name] = describe_changes(existing.get(name), pins)
        if name in existing and existing[name].text == text:
            result.unchanged.append(layer.lock)
        else:
            texts[name] = (text, len(pins))
    # All the new locks, or none: Ctrl-C waits until the last one is in place.
    with _ctrl_c_deferred():
        for name, (text, _) in texts.items():
            _write(graph.layers[name].lock, text)
            result.written.append(graph.layers[name].lock)
    for name, (_, count) in texts.items():
        log(f"wrote {display(graph.layers[name].lock, config.root)} ({count} pins)")
    return result


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _check_every_line_locked(graph: LayerGraph, universe: Mapping[str, Pin], log: Log) -> None:
    """Every requirement line reaches a pin, or the user hears why: nothing is dropped silently.

    pip-compile leaves out a requirement whose marker excludes this machine (said here, since the
    hosts may differ), and pins a `name @ URL` in a form a hash-checked layer lock cannot hold.
    """
    for name in graph.order:
        for line in graph.layers[name].requirements:
            wanted = requirement_name(line.text)
            if wanted is None or wanted in universe:
                continue
            from packaging.requirements import Requirement  # a missing pin is rare: verify never pays for it

            requirement = Requirement(line.text.split(" -")[0])
            where = line.where(graph.root)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                log(f"{where}: {clip(wanted)} is not locked: its marker ({clip(str(requirement.marker))}) excludes "
                    "this machine, and a lock holds what this machine resolves")
                continue
            raise LockError(
                f"{where}: '{clip(line.text)}' was asked for, but pip-compile locked no version of {clip(wanted)}",
                fix="write it as a name with a version specifier from the index (a direct URL cannot be pinned "
                "with ==), then run: nox -s lock",
            )


def _write(path: Path, text: str) -> None:
    """Replace a lock whole (written beside it, then renamed): never half a file, never through a link."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _header() -> list[str]:
    return [
        f"This file is generated by `{REGENERATE}` (pip-tools {_version('pip-tools')}, pinship "
        f"{_version('pinship')}).",
        "Do not edit it by hand. To regenerate it, run:",
        "",
        f"    {REGENERATE}",
    ]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _check_upgrade_names(names: Sequence[str], existing: Mapping[str, LockFile], graph: LayerGraph) -> list[str]:
    known = {pin_name for lock in existing.values() for pin_name in lock.pins}
    for layer in graph.layers.values():
        known.update(filter(None, (requirement_name(line.text) for line in layer.requirements)))
    unknown = [name for name in names if canonical(name) not in known]
    if unknown:
        raise LockError(
            f"unknown package(s) to upgrade: {clip(', '.join(unknown))} — not required or pinned by any layer "
            f"in {display(graph.folder, graph.root)}/",
            fix="check the spelling, or add the package to an .in file and run: nox -s lock",
        )
    return [canonical(name) for name in names]


def solve(
    config: Config,
    graph: LayerGraph,
    existing: Mapping[str, LockFile],
    *,
    upgrade: Sequence[str] = (),
    upgrade_all: bool = False,
    env: Mapping[str, str] | None = None,
    log: Log = print,
) -> dict[str, Pin]:
    """Run pip-compile once over the union of all layers; return every pin with its `via` list."""
    with tempfile.TemporaryDirectory(prefix="pinship-lock-") as tmp:
        work = Path(tmp)
        for name in graph.order:
            layer = graph.layers[name]
            lines = [line.text for line in layer.options + layer.requirements]
            lines += [f"-c {path}" for path in layer.external_constraints]
            (work / f"{name}.in").write_text("\n".join(lines) + "\n", encoding="utf-8")
        # Not `all.in`: a layer may be called `all` (init names one after an extra such as `all`).
        (work / "layers.union").write_text("".join(f"-r {name}.in\n" for name in graph.order), encoding="utf-8")
        if not upgrade_all:
            # The existing pins (with hashes) are pip-compile's preferences: nothing moves unless
            # an input demands it or an upgrade is asked for, and known hashes are reused.
            preferred = union(existing.values())
            (work / "all.txt").write_text("\n".join(pin_lines(preferred)) + "\n", encoding="utf-8")
        command = [sys.executable, "-m", "piptools", "compile", *COMPILE_OPTIONS, *config.compile_options]
        # -v: pip explains a conflict ("The conflict is caused by: …") only at that verbosity.
        command += ["--annotation-style=line", "--no-header", "-v", "-o", "all.txt", "layers.union"]
        command += [arg for name in upgrade for arg in ("--upgrade-package", name)]
        if upgrade_all:
            command.append("--upgrade")
        log(f"resolving {len(graph.order)} layers together with pip-compile")
        run_env = env if env is not None else os.environ
        returncode, output = _compile(command, work, run_env)
        if returncode != 0:
            # Through a proxy, a direct connection says nothing about whether pip reached the index.
            proxied = any(run_env.get(key) for key in _PROXIES)
            probe = None if proxied else network.probe
            message = conflicts.explain(_real_places(output, work, graph), graph, probe=probe)
            raise LockError(_hide_secrets(message, run_env), fix=None)
        return read_universe(work / "all.txt")


def _compile(command: list[str], work: Path, env: Mapping[str, str]) -> tuple[int, str]:
    """Run pip-compile in a process group of its own; Ctrl-C ends the whole group at once.

    A terminal's Ctrl-C reaches only us (pip-compile is in another session), so pip cannot turn it into
    a failed download and a made-up conflict 60 s later: the group is ended and KeyboardInterrupt goes
    on to the entry point, before any lock is written.
    """
    proc = subprocess.Popen(
        command, cwd=work, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate()
    except BaseException:
        _end_group(proc)
        raise
    return proc.returncode, err + out


def _end_group(proc: subprocess.Popen[str]) -> None:
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _real_places(output: str, work: Path, graph: LayerGraph) -> str:
    """pip's output with the temporary layer copies named by the real file and line.

    solve() writes each layer's option lines, then its requirement lines, then its `-c` lines, so
    line N of the copy is one known line of the user's files.
    """
    def place(layer_name: str, number: int) -> str | None:
        layer = graph.layers.get(layer_name)
        if layer is None:
            return None
        lines = layer.options + layer.requirements
        if 1 <= number <= len(lines):
            return lines[number - 1].where(graph.root)
        extra = number - len(lines) - 1
        if 0 <= extra < len(layer.external_constraints):
            return display(layer.external_constraints[extra], graph.root)
        return None

    def from_line(match: re.Match[str]) -> str:
        where = place(match.group("layer"), int(match.group("line")))
        return f"from {where}" if where else match.group(0)

    folder = re.escape(str(work))
    output = re.sub(rf"from line (?P<line>\d+) of {folder}/(?P<layer>[^\s/)]+)\.in", from_line, output)
    return output.replace(str(work), display(graph.folder, graph.root))


def _hide_secrets(message: str, env: Mapping[str, str]) -> str:
    """Blank out the values of secret-looking variables: pip expands `${VAR}` in requirement files
    and then quotes the line it could not use, so an `.in` line can carry a CI secret into a log."""
    for key, value in env.items():
        if len(value) >= 6 and _SECRET_NAME.search(key) and value in message:
            message = message.replace(value, "****")
    return message


