"""The host agent's own wheel installer (deploy/agent/wheel.py, venv.py), judged against real pip.

The same wheel goes into one venv with `pip install --no-deps` and into another with the agent's
`make_venv` + `install_wheels`, run the way a host runs them (`python -I -S`, the source as text).
Every file must land at the same place with the same bytes (bar the interpreter path in scripts,
and pip's own bookkeeping), the scripts must run, and RECORD must describe what is on disk.
"""

from __future__ import annotations

import base64
import csv
import ensurepip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy.release import depcheck
from deploy.remote.bundle import AGENT
from tests.support.pipenv import isolated_pip_env

# The agent exactly as hosts get it (all its parts, importable as pinship_agent), then the names the
# drivers below call, imported as any module of the agent imports them.
SOURCE = (f"{AGENT}\nfrom pinship_agent.protocol import Refused\nfrom pinship_agent.reuse import reuse_live\n"
          "from pinship_agent.venv import make_venv\nfrom pinship_agent.wheel import install_wheels\n")
TOOL_FILES = {
    "tool/__init__.py": b"def main():\n    print('tool main')\n\nclass App:\n    @staticmethod\n    def run():\n"
                        b"        print('app run')\n",
    "tool/sub/__init__.py": b"VALUE = 42\n",
    "tool/table.bin": bytes(range(256)),
    "tool-1.0.data/scripts/tool-script": b"#!python\nimport tool.sub\nprint('script', tool.sub.VALUE)\n",
    "tool-1.0.data/data/share/tool/readme.txt": b"shared data\n",
    "tool-1.0.data/purelib/tool_extra.py": b"EXTRA = 'yes'\n",
    "tool-1.0.data/headers/tool.h": b"#define TOOL 1\n",
    "tool-1.0.dist-info/entry_points.txt": b"[console_scripts]\ntool = tool:main\ntool-app = tool:App.run\n"
                                            b"\n[other.group]\nignored = tool:main\n",
}


def make_wheel(folder: Path, files: dict[str, bytes], *, record_override: dict[str, str] | None = None,
               name: str = "tool") -> Path:
    """A wheel with RECORD hashes, written by hand (as a build backend would)."""
    info = f"{name}-1.0.dist-info"
    entries = dict(files)
    entries[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
    entries[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for member, data in entries.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([member, (record_override or {}).get(member, f"sha256={digest}"), len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    entries[f"{info}/RECORD"] = record.getvalue().encode()
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for member, data in entries.items():
            item = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            item.external_attr = (0o100755 if member.endswith(".bin") else 0o100644) << 16
            archive.writestr(item, data)
    return wheel


def agent_install(
    venv: Path, wheels: list[Path], sha: dict[Path, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """make_venv + install_wheels in a fresh `python -I -S`, as the agent runs on a host."""
    request = [{"path": str(w), "filename": w.name,
                "sha256": (sha or {}).get(w) or hashlib.sha256(w.read_bytes()).hexdigest()} for w in wheels]
    driver = (f"{SOURCE}\nimport json, sys\nrequest = json.load(sys.stdin)\nmake_venv({str(venv)!r})\n"
              f"try:\n    print(install_wheels({str(venv)!r}, request))\n"
              "except Refused as exc:\n    print('REFUSED', exc)\n    sys.exit(3)\n")
    return subprocess.run([sys.executable, "-I", "-S", "-c", driver], input=json.dumps(request),
                          capture_output=True, text=True, check=False)


def pip_install(venv: Path, wheel: Path, tmp: Path) -> None:
    [bundled] = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = isolated_pip_env(None, tmp / "pip-cache")
    subprocess.run([str(venv / "bin" / "python"), f"{bundled}/pip", "install", "-q", "--no-index", "--no-deps",
                    str(wheel)], check=True, env=env)


def tree(venv: Path) -> dict[str, bytes]:
    """Every file under the venv, by relative path, with the venv's own path written as VENV."""
    skip = {"INSTALLER", "RECORD", "REQUESTED", "direct_url.json"}  # bookkeeping, compared apart
    out = {}
    for path in venv.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.name not in skip and "__pycache__" not in path.parts:
            out[path.relative_to(venv).as_posix()] = path.read_bytes().replace(str(venv).encode(), b"VENV")
    return out


def run_in(venv: Path, *command: str) -> str:
    proc = subprocess.run([str(venv / "bin" / command[0]), *command[1:]], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_agent_installs_a_wheel_exactly_where_and_as_pip_does(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, TOOL_FILES)
    by_pip, by_agent = tmp_path / "pip" / "venv", tmp_path / "agent" / "venv"  # one name: one prompt
    pip_install(by_pip, wheel, tmp_path)
    done = agent_install(by_agent, [wheel])
    assert done.returncode == 0, done.stdout + done.stderr

    ours, pips = tree(by_agent), tree(by_pip)
    launchers = {"bin/tool", "bin/tool-app"}  # each installer writes its own launcher text
    assert ours.keys() == pips.keys()
    assert {path: data for path, data in ours.items() if path not in launchers} == {
        path: data for path, data in pips.items() if path not in launchers}
    for venv in (by_agent, by_pip):
        assert run_in(venv, "tool") == "tool main\n"
        assert run_in(venv, "tool-app") == "app run\n"
    # pip leaves a script as the archive had it (not executable here); the spec lets an installer
    # add +x, and a script one cannot run is no use on a server.
    assert run_in(by_agent, "tool-script") == "script 42\n"
    site = next((by_agent / "lib").glob("python*/site-packages"))
    assert os.access(site / "tool" / "table.bin", os.X_OK)  # file modes kept, as pip keeps them
    assert (site / "tool" / "__pycache__").is_dir()  # byte-compiled, as pip does by default


def venv_files(venv: Path) -> dict[str, tuple[object, ...]]:
    """Every entry of a venv: links with their targets, files with bytes and mode, folders with mode."""
    found: dict[str, tuple[object, ...]] = {}
    for folder, dirs, files in os.walk(venv):
        for name in dirs + files:
            path = Path(folder, name)
            mode = path.lstat().st_mode & 0o7777
            key = path.relative_to(venv).as_posix()
            if path.is_symlink():
                found[key] = ("link", os.readlink(path))
            elif path.is_dir():
                found[key] = ("dir", mode)
            else:
                found[key] = ("file", path.read_bytes(), mode)
    return found


def test_a_venv_copied_from_the_template_is_the_venv_modules_own(tmp_path: Path) -> None:
    """make_venv makes the venv module's output once, then copies it: the copies must be exactly
    what `python -m venv --without-pip` makes at their path, and work."""
    venv = tmp_path / "releases" / "r1" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    expected = venv_files(venv)
    assert any(kind == "link" for kind, *_ in expected.values())  # the comparison covers links
    shutil.rmtree(venv)
    templates = tmp_path / ".agent"
    driver = f"{SOURCE}\nmake_venv({str(venv)!r}, {str(templates)!r})\n"
    for _ in ("template made, then copied", "copied from the template made before"):
        subprocess.run([sys.executable, "-I", "-S", "-c", driver], check=True)
        assert venv_files(venv) == expected
        prefix = subprocess.run([str(venv / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                                capture_output=True, text=True, check=True).stdout.strip()
        assert prefix == str(venv)
        shutil.rmtree(venv)
    assert [p.name.startswith("venv-") for p in templates.iterdir()] == [True]


def test_the_agents_record_describes_exactly_what_is_on_disk(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, TOOL_FILES)
    venv = tmp_path / "venv"
    done = agent_install(venv, [wheel])
    assert done.returncode == 0, done.stdout + done.stderr
    # The venv's own interpreter reads RECORD back through importlib.metadata, as `status` does.
    check = (
        "import base64, hashlib, json, os\nfrom importlib import metadata\n"
        "dist = metadata.distribution('tool')\nrows = []\n"
        "for item in dist.files:\n"
        "    path = item.locate()\n"
        "    ok = None\n"
        "    if item.hash:\n"
        "        data = open(path, 'rb').read()\n"
        "        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()\n"
        "        ok = digest == item.hash.value\n"
        "    rows.append([str(item), os.path.exists(path), ok])\n"
        "print(json.dumps({'installer': dist.read_text('INSTALLER'), 'rows': rows}))\n"
    )
    proc = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", check], capture_output=True, text=True,
                          check=True)
    found = json.loads(proc.stdout)
    assert found["installer"].strip() == "pinship"
    listed = {row[0] for row in found["rows"]}
    assert all(row[1] for row in found["rows"]), found  # nothing listed is missing
    assert all(row[2] in (True, None) for row in found["rows"]), found  # every hash matches
    # and every file has one, .pyc files and launchers too: the next release links only proven files
    assert [row[0] for row in found["rows"] if row[2] is None] == ["tool-1.0.dist-info/RECORD"], found
    empty = tmp_path / "empty"
    assert agent_install(empty, []).returncode == 0  # what the venv holds before any wheel
    site = next((venv / "lib").glob("python*/site-packages"))
    before = {p.relative_to(empty) for p in empty.rglob("*") if p.is_file()}
    added = {p for p in venv.rglob("*") if p.is_file() and p.relative_to(venv) not in before}
    assert {os.path.relpath(p, site).replace(os.sep, "/") for p in added} == listed  # nothing unlisted
    assert any(name.endswith(".pyc") for name in listed)


@pytest.mark.parametrize(
    ("files", "override", "sha", "refusal"),
    [
        ({"tool/__init__.py": b"x = 1\n"}, {"tool/__init__.py": "sha256=AAAA"}, None, "does not match the hash"),
        ({"tool/__init__.py": b"x = 1\n"}, None, "0" * 64, "hash mismatch"),
        ({"tool/../../../../escape.py": b"x = 1\n"}, None, None, "outside"),
        ({"tool-1.0.data/elsewhere/x.py": b"x = 1\n"}, None, None, "no known scheme"),
    ],
    ids=["member-hash", "wheel-hash", "path-escape", "unknown-scheme"],
)
def test_the_agent_refuses_a_wheel_that_is_not_what_it_claims(
    tmp_path: Path, files: dict[str, bytes], override: dict[str, str] | None, sha: str | None, refusal: str,
) -> None:
    wheel = make_wheel(tmp_path, files, record_override=override)
    done = agent_install(tmp_path / "venv", [wheel], {wheel: sha} if sha else None)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "REFUSED tool-1.0-py3-none-any.whl" in done.stdout
    assert refusal in done.stdout
    assert not (tmp_path / "escape.py").exists()


def test_two_wheels_that_install_the_same_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_wheel(tmp_path / "a", {"shared/__init__.py": b"a = 1\n"}, name="first")
    second = make_wheel(tmp_path / "b", {"shared/__init__.py": b"b = 1\n"}, name="second")
    done = agent_install(tmp_path / "venv", [first, second])
    assert done.returncode == 3
    assert "second-1.0-py3-none-any.whl" in done.stdout and "also installed by first" in done.stdout


def metadata_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {line}\n" for line in requires)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{info}/METADATA", metadata)
    return path


def test_the_dependency_check_reports_what_pip_check_would(tmp_path: Path) -> None:
    here = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux",
            "implementation_name": "cpython", "python_full_version": "3.11.7", "os_name": "posix",
            "platform_machine": "x86_64", "platform_release": "6", "platform_version": "#1",
            "platform_python_implementation": "CPython", "implementation_version": "3.11.7"}
    wheels = [
        metadata_wheel(tmp_path, "app", "1.0", ["web>=2", "orm", 'legacy; python_version < "3"',
                                                'winonly; sys_platform == "win32"', 'docs; extra == "docs"']),
        metadata_wheel(tmp_path, "web", "1.5", ["util"]),
        metadata_wheel(tmp_path, "Util", "0.1rc1", []),
    ]
    assert depcheck.problems(wheels, here) == [
        "app 1.0 requires orm, which is not in the release",
        "app 1.0 requires web>=2, but the release has web 1.5",
    ]
    on_windows = {**here, "sys_platform": "win32"}
    assert "app 1.0 requires winonly; sys_platform == \"win32\", which is not in the release" in depcheck.problems(
        wheels, on_windows)
