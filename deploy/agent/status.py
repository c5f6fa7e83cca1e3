"""The read-only steps: what `probe`, `status` and `releases` ask of a host, and the files `read`
returns, each in one round trip; none of them writes anything."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys

from .claim import holder
from .command import run
from .files import check_layout_of, path_problem, read_bytes
from .protocol import Failure, is_hex, is_release_id, shown, timeout_arg
from .store import complete_releases, layout_problems, live, previous_release, release_dir

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host's every session an import; the annotations need none
    from typing import Any

    from .protocol import Request


def platform_tags() -> list[str]:
    """The platform tags this host's Python installs wheels for (as pip would compute them)."""
    machine = os.uname().machine
    if not sys.platform.startswith("linux"):
        import sysconfig

        return [sysconfig.get_platform().replace("-", "_").replace(".", "_")]
    found = []
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        libc = ""
    if libc.startswith("glibc "):
        major, minor = [int(part) for part in libc.split()[1].split(".")[:2]]
        found += ["manylinux_%d_%d_%s" % (major, m, machine) for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        found += ["%s_%s" % (name, machine) for floor, name in sorted(legacy.items(), reverse=True) if minor >= floor]
    return [*found, "linux_%s" % machine]


def marker_environment() -> dict[str, str]:
    """The values PEP 508 markers test, as this interpreter sees them (what pip check uses)."""
    import platform

    info = sys.implementation.version
    implementation_version = "%d.%d.%d" % info[:3]
    if info.releaselevel != "final":
        implementation_version += info.releaselevel[0] + str(info.serial)
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": implementation_version,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def op_probe(req: Request) -> dict[str, Any]:
    root = req["path"]
    store = os.path.join(root, "wheels")
    inventory = []
    for digest in os.listdir(store) if not path_problem(store, "dir") and os.path.isdir(store) else []:
        folder = os.path.join(store, digest)
        if is_hex(digest, 64) and not path_problem(folder, "dir") and os.path.isdir(folder) and os.listdir(folder):
            inventory.append(digest)
    owner = holder(root)
    existing = root
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing) or "/"
    usage = shutil.disk_usage(existing)
    return {
        "tags": platform_tags(),
        "markers": marker_environment(),
        "python": {
            "implementation": sys.implementation.name,
            "version": "%d.%d" % sys.version_info[:2],
            "platform": sys.platform,
            "machine": os.uname().machine,
        },
        "current": live(root),
        "previous": previous_release(root),
        "releases": complete_releases(root),
        "store": inventory,
        "lock": owner,
        "unsafe": layout_problems(root),  # each a path pinship will not work through, and why
        "free_bytes": usage.free,
    }


# Run inside the live venv: what is installed, and which installed files no longer match the
# hashes their wheel's RECORD gave them (someone edited site-packages on the host).
INSPECT = r"""
import base64, hashlib, json
from importlib import metadata
out = {"installed": {}, "modified": []}
for dist in metadata.distributions():
    name = dist.metadata["Name"]
    out["installed"][name] = dist.version
    for item in dist.files or []:
        if item.hash is None or item.hash.mode != "sha256":
            continue
        try:
            with open(item.locate(), "rb") as handle:
                data = handle.read()
        except OSError:
            out["modified"].append([name, str(item), "missing"])
            continue
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if digest != item.hash.value:
            out["modified"].append([name, str(item), "changed"])
print(json.dumps(out))
"""


def read_log(root: str, limit: int = 200, tail: int = 1 << 20) -> list[Any]:
    """The last `limit` entries of deploy.log, read from its last `tail` bytes (never through a link)."""
    try:
        descriptor = os.open(os.path.join(root, "deploy.log"), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return []
        handle.seek(max(0, info.st_size - tail))
        lines = handle.read(tail).decode("utf-8", "replace").splitlines()[-limit:]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pass
    return entries


def read_manifest(root: str, release: str) -> dict[str, Any] | None:
    try:
        manifest = json.loads(read_bytes(os.path.join(release_dir(root, release), "manifest.json")) or b"null")
    except (Failure, OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def op_status(req: Request) -> dict[str, Any]:
    """Everything `status` and `releases` show, in one round trip; writes nothing.

    "lock" is the claim's holder as stored (None when free), "unsafe" every path pinship
    will not work through (see layout_problems): both mean the next deploy will not go ahead.
    """
    root = req["path"]
    current = live(root)
    result = {"current": current, "previous": previous_release(root), "log": read_log(root),
              "releases": [{"release": name, "manifest": read_manifest(root, name)}
                           for name in complete_releases(root)],
              "lock": holder(root), "unsafe": layout_problems(root)}
    if current in complete_releases(root) and req.get("inspect", True):
        python = os.path.join(release_dir(root, current), "venv", "bin", "python")
        code, out = run([python, "-I", "-c", INSPECT], timeout_arg(req))
        result["venv"] = {"error": out[-2000:]}
        if code == 0:
            try:
                result["venv"] = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                pass
    return result


# What `read` may return: nothing but these, each opened without following a link.
READABLE = ("manifest.json", "requirements.lock")


def op_read(req: Request) -> dict[str, Any]:
    """A file from a release (its manifest, lock) or the deploy log, for status and history."""
    root, name = req["path"], req.get("file")
    parts = name.split("/") if isinstance(name, str) else []
    if name == "deploy.log":
        path = os.path.join(root, name)
    elif len(parts) == 3 and parts[0] == "releases" and is_release_id(parts[1]) and parts[2] in READABLE:
        check_layout_of(os.path.join(root, "releases"), "dir")
        check_layout_of(release_dir(root, parts[1]), "dir")
        path = os.path.join(root, *parts)
    else:
        raise Failure("bad-request", "%s is not a file pinship reads (deploy.log, releases/<release>/manifest.json "
                      "or releases/<release>/requirements.lock): refused" % shown(name))
    data = read_bytes(path)
    return {"text": None if data is None else data.decode("utf-8", "replace")}


