"""Host side, the read-only part: what `status` and `releases` ask of a host, in one round trip.
Sent to hosts ahead of agent.py (stdlib only, any Python 3.8+); uses its helpers at call time.
"""

import json
import os
import stat

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


def read_log(root, limit=200, tail=1 << 20):
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


def read_manifest(root, release):
    try:
        manifest = json.loads(read_bytes(os.path.join(release_dir(root, release), "manifest.json")) or b"null")
    except (Failure, OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def op_status(req):
    """Everything `status` and `releases` show, in one round trip; writes nothing.

    "lock" is the deploy lock's owner as stored (None when free), "unsafe" every path pinship
    will not work through (see layout_problems): both mean the next deploy will not go ahead.
    """
    root = req["path"]
    current = live(root)
    result = {"current": current, "previous": previous_release(root), "log": read_log(root),
              "releases": [{"release": name, "manifest": read_manifest(root, name)}
                           for name in complete_releases(root)],
              "lock": read_owner(root), "unsafe": layout_problems(root)}
    if current in complete_releases(root) and req.get("inspect", True):
        python = os.path.join(release_dir(root, current), "venv", "bin", "python")
        code, out = run([python, "-I", "-c", INSPECT], req.get("timeout", 600))
        result["venv"] = {"error": out[-2000:]}
        if code == 0:
            try:
                result["venv"] = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                pass
    return result
