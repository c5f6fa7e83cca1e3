"""The host installer's edges: `#!python` forms, launchers under a path with a space or a very long
one, RECORD hash algorithms, entry points without a function, reusing the live release by hard
link, and RECORDs that list a file twice.

Run as a host runs them: the agent's source in a fresh `python -I -S`, making a release's venv
the way its stage step does (make_venv, link from the live release, install the rest).
"""

from __future__ import annotations

import base64
import csv
import ensurepip
import hashlib
import io
import json
import marshal
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

from deploy.agent.status import INSPECT
from tests.deployproject import make_project
from tests.support.pkgindex import PackageIndex
from tests.test_install import SOURCE, TOOL_FILES, agent_install, make_wheel

WHEEL = "tool-1.0-py3-none-any.whl"
WHERE = {
    "tool/__init__.py": b"import sys\nVALUE = 'genuine'\ndef main():\n    print('tool main')\n"
                        b"def where():\n    print(sys.prefix)\n",
    "tool-1.0.dist-info/entry_points.txt": b"[console_scripts]\ntool = tool:main\ntool-where = tool:where\n",
}


def record_digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}=" + base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest()).rstrip(b"=").decode()


def wheel_request(wheels: list[Path]) -> list[dict[str, str]]:
    return [{"path": str(w), "filename": w.name, "sha256": hashlib.sha256(w.read_bytes()).hexdigest()} for w in wheels]


STAGE = """
import json, os, sys
request = json.load(sys.stdin)
root, wheels = request["root"], request["wheels"]
release = os.path.join(root, "releases", request["release"])
os.makedirs(release)
with open(os.path.join(release, "manifest.json"), "w") as handle:
    json.dump({"wheels": wheels}, handle)
venv = os.path.join(release, "venv")
make_venv(venv, os.path.join(root, ".agent"))
try:
    linked = reuse_live(root, release, wheels, request["live"])
    install_wheels(venv, [w for w in wheels if w["sha256"] not in linked])
except Refused as exc:
    print("REFUSED", exc)
    sys.exit(3)
print(json.dumps(sorted(linked)))
"""


def stage(root: Path, release: str, wheels: list[Path], live: str | None = None) -> subprocess.CompletedProcess[str]:
    """A release's venv made as the agent's stage step makes it, reusing `live` where it can."""
    request = {"root": str(root), "release": release, "wheels": wheel_request(wheels), "live": live}
    return subprocess.run([sys.executable, "-I", "-S", "-c", f"{SOURCE}\n{STAGE}"], input=json.dumps(request),
                          capture_output=True, text=True, check=False)


def staged(root: Path, release: str, wheels: list[Path], live: str | None = None) -> list[str]:
    done = stage(root, release, wheels, live)
    assert done.returncode == 0, done.stdout + done.stderr
    linked: list[str] = json.loads(done.stdout.splitlines()[-1])
    return linked


def venv_of(root: Path, release: str) -> Path:
    return root / "releases" / release / "venv"


def site_of(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def run(path: Path, *args: str) -> str:
    """Run a file as a user would: by its path, no shell, so the kernel reads its first line."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}  # e.g. PYTHONUNBUFFERED
    proc = subprocess.run([str(path), *args], capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, f"{path} failed ({proc.returncode}): {proc.stdout}{proc.stderr}"
    return proc.stdout


def test_a_script_whose_first_line_starts_with_python_runs_on_the_venvs_interpreter_with_its_arguments(
    tmp_path: Path,
) -> None:
    check = b"import sys\nprint(sys.prefix, int(sys.stdout.write_through), sys.flags.ignore_environment)\n"
    wheel = make_wheel(tmp_path, {
        "tool-1.0.data/scripts/plain": b"#!python\n" + check,
        "tool-1.0.data/scripts/unbuffered": b"#!python -u\n" + check,
        "tool-1.0.data/scripts/versioned": b"#!python3\n" + check,
        "tool-1.0.data/scripts/dotted": b"#!python3.8 -E\r\n" + check,
        "tool-1.0.data/scripts/gui": b"#!pythonw\n" + check,
        "tool-1.0.data/scripts/other": b"#!/bin/sh\necho left as it is\n",
    })
    venv = tmp_path / "venv"
    done = agent_install(venv, [wheel])
    assert done.returncode == 0, done.stdout + done.stderr
    expected = {"plain": "0 0", "unbuffered": "1 0", "versioned": "0 0", "dotted": "0 1", "gui": "0 0"}
    for script, flags in expected.items():
        assert run(venv / "bin" / script) == f"{venv} {flags}\n", script
    assert (venv / "bin" / "unbuffered").read_bytes().startswith(f"#!{venv}/bin/python -u\nimport sys\n".encode())
    assert run(venv / "bin" / "other") == "left as it is\n"


@pytest.mark.parametrize("where", ["My Project/.deploy/local/releases/r1/venv", "/".join(["x" * 100] * 3) + "/venv",
                                   "Dev's \"Project\" $HOME/venv"],
                         ids=["space-in-path", "path-longer-than-a-shebang", "quotes-in-path"])
def test_launchers_and_scripts_run_from_a_venv_whose_path_has_a_space_or_is_very_long(
    tmp_path: Path, where: str,
) -> None:
    unbuffered = b"#!python -u\nimport sys\nprint(int(sys.stdout.write_through))\n"
    files = {**TOOL_FILES, "tool-1.0.data/scripts/unbuffered": unbuffered}
    wheel = make_wheel(tmp_path, files)
    venv = tmp_path / where
    done = agent_install(venv, [wheel])
    assert done.returncode == 0, done.stdout + done.stderr
    assert run(venv / "bin" / "tool") == "tool main\n"
    assert run(venv / "bin" / "tool-app", "--flag") == "app run\n"
    assert run(venv / "bin" / "tool-script") == "script 42\n"
    assert run(venv / "bin" / "unbuffered") == "1\n"
    for name in ("tool", "tool-app", "tool-script", "unbuffered"):
        first = (venv / "bin" / name).read_bytes().split(b"\n", 1)[0]
        assert first == b"#!/bin/sh"  # what every kernel runs, whatever the venv's path


@pytest.mark.parametrize("where", ["plain", "My Project"])
def test_a_release_that_links_the_live_ones_launchers_runs_them_on_its_own_python(
    tmp_path: Path, where: str,
) -> None:
    wheel = make_wheel(tmp_path, {**WHERE, "tool-1.0.data/scripts/flags": b"#!python -u\nimport sys\n"
                                  b"print(sys.prefix, int(sys.stdout.write_through))\n"})
    root = tmp_path / where / ".deploy" / "local"
    staged(root, "r1", [wheel])
    assert staged(root, "r2", [wheel], live="r1") != []  # linked, not installed again
    shutil.rmtree(root / "releases" / "r1")  # pruned: nothing may still point into it
    venv = venv_of(root, "r2")
    assert run(venv / "bin" / "tool-where") == f"{venv}\n"
    assert run(venv / "bin" / "flags") == f"{venv} 1\n"
    assert run(venv / "bin" / "tool") == "tool main\n"
    record = (site_of(venv) / "tool-1.0.dist-info" / "RECORD").read_bytes()
    assert b"\r\n" not in record  # rewritten with the line endings RECORD is written with
    rows = {row[0]: row[1] for row in csv.reader(io.StringIO(record.decode()))}
    assert rows["../../../bin/tool-where"] == record_digest((venv / "bin" / "tool-where").read_bytes())


def test_a_linked_packages_record_keeps_the_lf_line_endings_record_is_written_with(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, {"tool/__init__.py": b"VALUE = 1\n"})
    root = tmp_path / "deploy"
    staged(root, "r1", [wheel])
    assert staged(root, "r2", [wheel], live="r1") != []
    record = (site_of(venv_of(root, "r2")) / "tool-1.0.dist-info" / "RECORD").read_bytes()
    assert b"\r" not in record and record.count(b"\n") >= 5


@pytest.mark.parametrize("algorithm", ["sha384", "sha512", "sha3_256", "blake2b"])
def test_record_hashes_at_least_as_strong_as_sha256_are_accepted(tmp_path: Path, algorithm: str) -> None:
    data = b"VALUE = 1\n"
    wheel = make_wheel(tmp_path, {"tool/__init__.py": data},
                       record_override={"tool/__init__.py": record_digest(data, algorithm)})
    done = agent_install(tmp_path / "venv", [wheel])
    assert done.returncode == 0, done.stdout + done.stderr
    tampered = make_wheel(tmp_path, {"tool/__init__.py": data},
                          record_override={"tool/__init__.py": record_digest(b"VALUE = 2\n", algorithm)})
    refused = agent_install(tmp_path / "other", [tampered])
    assert refused.returncode == 3
    assert f"REFUSED {WHEEL}: tool/__init__.py does not match the hash in the wheel's RECORD" in refused.stdout


@pytest.mark.parametrize(("algorithm", "reason"), [("md5", "weaker than sha256"), ("sha1", "weaker than sha256"),
                                                   ("crc32", "use one of sha256, sha384, sha512")])
def test_record_hashes_weaker_than_sha256_or_unknown_are_refused_by_name(
    tmp_path: Path, algorithm: str, reason: str,
) -> None:
    data = b"VALUE = 1\n"
    digest = record_digest(data, algorithm) if algorithm in hashlib.algorithms_available else f"{algorithm}=AAAA"
    wheel = make_wheel(tmp_path, {"tool/__init__.py": data}, record_override={"tool/__init__.py": digest})
    done = agent_install(tmp_path / "venv", [wheel])
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith(
        f"REFUSED {WHEEL}: tool/__init__.py is hashed with {algorithm} in the wheel's RECORD, which the wheel "
        f"spec does not allow ({reason}")
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("entry", ["tool = tool.cli", "tool = tool.cli [extra]", "tool = tool.cli:"])
def test_an_entry_point_without_a_function_is_refused_naming_the_wheel_and_the_entry_point(
    tmp_path: Path, entry: str,
) -> None:
    wheel = make_wheel(tmp_path, {"tool/__init__.py": b"", "tool/cli.py": b"print('ran at import')\n",
                                  "tool-1.0.dist-info/entry_points.txt": f"[console_scripts]\n{entry}\n".encode()})
    done = agent_install(tmp_path / "venv", [wheel])
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"REFUSED {WHEEL}: console_scripts entry point '{entry}' names no function to call" in done.stdout


def tamper_pyc(site: Path, module: str, source: str) -> Path:
    """Replace a module's .pyc with code compiled from `source`, its header kept: Python then runs it
    instead of the module's source, as it would run a pyc someone slipped onto the host."""
    [pyc] = (site / module / "__pycache__").glob("__init__.*.pyc")
    header = pyc.read_bytes()[:16]
    pyc.write_bytes(header + marshal.dumps(compile(source, str(site / module / "__init__.py"), "exec")))
    return pyc


def test_a_tampered_pyc_in_the_live_release_is_reported_by_status_and_never_linked_into_the_next(
    tmp_path: Path,
) -> None:
    wheel = make_wheel(tmp_path, WHERE)
    root = tmp_path / "deploy"
    staged(root, "r1", [wheel])
    live = venv_of(root, "r1")
    pyc = tamper_pyc(site_of(live), "tool", "VALUE = 'tampered'\n")
    value = [str(live / "bin" / "python"), "-c", "import tool; print(tool.VALUE)"]
    assert subprocess.run(value, capture_output=True, text=True, check=True).stdout == "tampered\n"

    # What `invoke status` runs in the live venv names the file.
    inspected = subprocess.run([str(live / "bin" / "python"), "-I", "-c", INSPECT], capture_output=True, text=True,
                               check=True)
    modified = json.loads(inspected.stdout)["modified"]
    assert ["tool", os.path.relpath(pyc, site_of(live)).replace(os.sep, "/"), "changed"] in modified

    assert staged(root, "r2", [wheel], live="r1") == []  # installed afresh, not linked
    new = venv_of(root, "r2")
    value[0] = str(new / "bin" / "python")
    assert subprocess.run(value, capture_output=True, text=True, check=True).stdout == "genuine\n"
    [new_pyc] = (site_of(new) / "tool" / "__pycache__").glob("__init__.*.pyc")
    assert new_pyc.stat().st_ino != pyc.stat().st_ino


def test_files_of_a_live_release_whose_record_gives_them_no_hash_are_not_linked(tmp_path: Path) -> None:
    """A release made before .pyc rows had hashes (as pip writes them): nothing proves its .pyc files."""
    wheel = make_wheel(tmp_path, WHERE)
    root = tmp_path / "deploy"
    staged(root, "r1", [wheel])
    record = site_of(venv_of(root, "r1")) / "tool-1.0.dist-info" / "RECORD"
    rows = [[path, "" if path.endswith(".pyc") else digest, "" if path.endswith(".pyc") else size]
            for path, digest, size in csv.reader(io.StringIO(record.read_text()))]
    assert any(path.endswith(".pyc") for path, _, _ in rows)
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    record.write_text(text.getvalue())
    assert staged(root, "r2", [wheel], live="r1") == []
    assert staged(root, "r3", [wheel], live="r2") != []  # what this agent writes is linked again


def two_wheels(tmp_path: Path, first: dict[str, bytes], second: dict[str, bytes]) -> tuple[Path, Path]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return make_wheel(tmp_path / "a", first, name="first"), make_wheel(tmp_path / "b", second, name="second")


def test_a_wheel_that_writes_over_a_file_of_a_package_linked_from_the_live_release_is_refused(
    tmp_path: Path,
) -> None:
    first, second = two_wheels(tmp_path, {"shared/__init__.py": b"a = 1\n"}, {"shared/__init__.py": b"b = 1\n"})
    root = tmp_path / "deploy"
    staged(root, "r1", [first])
    done = stage(root, "r2", [first, second], live="r1")
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith("REFUSED second-1.0-py3-none-any.whl: shared/__init__.py is also installed by "
                                  "first-1.0.dist-info (linked from the live release)")
    assert (site_of(venv_of(root, "r1")) / "shared" / "__init__.py").read_text() == "a = 1\n"


def test_two_wheels_with_a_launcher_of_the_same_name_are_refused(tmp_path: Path) -> None:
    points = b"[console_scripts]\nserve = %s:main\n"
    first, second = two_wheels(
        tmp_path,
        {"first/__init__.py": b"def main(): pass\n", "first-1.0.dist-info/entry_points.txt": points % b"first"},
        {"second/__init__.py": b"def main(): pass\n", "second-1.0.dist-info/entry_points.txt": points % b"second"})
    done = agent_install(tmp_path / "venv", [first, second])
    assert done.returncode == 3, done.stdout + done.stderr
    assert "REFUSED second-1.0-py3-none-any.whl: its launcher serve is also installed by first-1.0-py3-none-any.whl" \
        in done.stdout


def raw_wheel(folder: Path, members: list[tuple[str, bytes]], rows: list[tuple[str, str]]) -> Path:
    """A wheel written member by member (duplicates kept), its RECORD given row by row."""
    info = "tool-1.0.dist-info"
    members = [*members, (f"{info}/METADATA", b"Metadata-Version: 2.1\nName: tool\nVersion: 1.0\n"),
               (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")]
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    writer.writerows([name, record_digest(data), len(data)] for name, data in members[-2:])
    writer.writerows([name, record_digest(data.encode()), len(data)] for name, data in rows)
    writer.writerow([f"{info}/RECORD", "", ""])
    path = folder / WHEEL
    with zipfile.ZipFile(path, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name, and writes it
        for name, data in [*members, (f"{info}/RECORD", record.getvalue().encode())]:
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return path


def test_a_wheel_listing_one_file_twice_installs_it_once_as_pip_does(tmp_path: Path) -> None:
    module = b"VALUE = 1\n"
    wheel = raw_wheel(tmp_path, [("tool/__init__.py", module), ("tool/__init__.py", module)],
                      [("tool/__init__.py", "VALUE = 1\n"), ("tool/__init__.py", "VALUE = 1\n")])
    venv = tmp_path / "venv"
    done = agent_install(venv, [wheel])
    assert done.returncode == 0, done.stdout + done.stderr
    record = (site_of(venv) / "tool-1.0.dist-info" / "RECORD").read_text()
    assert [line.split(",")[0] for line in record.splitlines()].count("tool/__init__.py") == 1


@pytest.mark.parametrize(
    ("members", "rows", "refusal"),
    [
        ([("tool/__init__.py", b"VALUE = 1\n")],
         [("tool/__init__.py", "VALUE = 1\n"), ("tool/__init__.py", "VALUE = 2\n")],
         "tool/__init__.py is listed twice in the wheel's RECORD, with different hashes or sizes"),
        ([("tool/__init__.py", b"VALUE = 1\n"), ("tool/__init__.py", b"VALUE = 2\n")],
         [("tool/__init__.py", "VALUE = 1\n")],
         "tool/__init__.py does not match the hash in the wheel's RECORD"),
        ([("tool/__init__.py", b"def main(): pass\n"), ("tool-1.0.data/scripts/tool", b"#!/bin/sh\n"),
          ("tool-1.0.dist-info/entry_points.txt", b"[console_scripts]\ntool = tool:main\n")],
         [("tool/__init__.py", "def main(): pass\n"), ("tool-1.0.data/scripts/tool", "#!/bin/sh\n"),
          ("tool-1.0.dist-info/entry_points.txt", "[console_scripts]\ntool = tool:main\n")],
         "bin/tool is written twice by this wheel, with different contents"),
    ],
    ids=["record-contradicts-itself", "two-different-copies", "launcher-over-a-script"],
)
def test_a_wheel_that_holds_one_file_two_ways_is_refused_saying_what_is_wrong(
    tmp_path: Path, members: list[tuple[str, bytes]], rows: list[tuple[str, str]], refusal: str,
) -> None:
    wheel = raw_wheel(tmp_path, members, rows)
    done = agent_install(tmp_path / "venv", [wheel])
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith(f"REFUSED {WHEEL}: ")
    assert refusal in done.stdout
    assert "two wheels" not in done.stdout


def test_a_local_deploy_under_a_folder_with_a_space_gets_launchers_that_run(tmp_path: Path) -> None:
    """`invoke deploy --env local` in a checkout under `My Project/`, twice (the second links pip
    from the first release): pip's own launchers must run from the live release."""
    [bundled] = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    with PackageIndex(tmp_path / "index") as index:
        for name, requires in (("alpha", ["beta>=1"]), ("beta", []), ("delta", [])):
            index.add(name, "1.0", requires)
        index.add("gamma", "1.0", sdist_only=True)
        shutil.copy(bundled, index.root / bundled.name)
        project = make_project(tmp_path / "My Project" / "app", index.url)
        (project.root / "requirements" / "prod.in").write_text("-r base.in\ngamma\npip\n")
        relock = subprocess.run([sys.executable, "-m", "deploy", "lock"], cwd=project.root, env=project.env,
                                capture_output=True, text=True, check=False)
        assert relock.returncode == 0, relock.stdout + relock.stderr
        for version in ("1.0", "1.1"):
            project.set_version(version)
            project.deploy_ok(env="local")
    venv = project.root / ".deploy" / "local" / "current" / "venv"
    shown = run(venv / "bin" / "pip", "--version")
    assert shown.startswith(f"pip {bundled.name.split('-')[1]} from {venv.resolve()}"), shown


def test_a_record_that_is_not_readable_csv_is_refused_not_a_traceback(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, {"tool/__init__.py": b"x = 1\n"},
                       record_override={"tool/__init__.py": "sha256=" + "A" * 200_000})  # past csv's field limit
    done = agent_install(tmp_path / "venv", [wheel])
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith(f"REFUSED {WHEEL}: the wheel's RECORD cannot be read as CSV: field larger than")


def test_a_deploy_path_with_glob_characters_still_links_from_the_live_release(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, WHERE)
    root = tmp_path / "ops [prod]" / "deploy"
    staged(root, "r1", [wheel])
    assert staged(root, "r2", [wheel], live="r1") != []
    assert run(venv_of(root, "r2") / "bin" / "tool-where") == f"{venv_of(root, 'r2')}\n"


def test_a_wheel_compressed_in_a_way_this_python_cannot_read_is_refused_not_a_traceback(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, {"tool/__init__.py": b"x = 1\n"})
    data = bytearray(wheel.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # local and central headers
        at = data.find(signature)
        while at != -1:
            data[at + offset:at + offset + 2] = (99).to_bytes(2, "little")  # a method zipfile does not know
            at = data.find(signature, at + 4)
    wheel.write_bytes(bytes(data))
    done = agent_install(tmp_path / "venv", [wheel])
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith(f"REFUSED {WHEEL}: cannot be unpacked by Python ")


def test_linking_a_file_over_one_the_venv_module_made_replaces_it_never_writes_through_its_link(
    tmp_path: Path,
) -> None:
    """A wheel whose script is named like one of the venv's own links (bin/python3 -> the base
    interpreter): linking it into the next release must not write into what the link points at."""
    wheel = make_wheel(tmp_path, {"tool-1.0.data/scripts/python3": b"#!/bin/sh\necho not python\n"})
    root = tmp_path / "deploy"
    staged(root, "r1", [wheel])
    decoy = tmp_path / "base-interpreter"
    decoy.write_bytes(b"the base interpreter\n")
    [link] = (root / ".agent").glob("venv-*/venv/bin/python3")  # the template each release's venv copies
    link.unlink()
    link.symlink_to(decoy)
    assert staged(root, "r2", [wheel], live="r1") != []
    assert decoy.read_bytes() == b"the base interpreter\n"
    assert run(venv_of(root, "r2") / "bin" / "python3") == "not python\n"


def test_a_wheel_that_ships_its_own_installer_file_gets_ours_as_pip_gives_it_pips(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, {"tool/__init__.py": b"x = 1\n", "tool-1.0.dist-info/INSTALLER": b"pip\n"})
    venv = tmp_path / "venv"
    done = agent_install(venv, [wheel])
    assert done.returncode == 0, done.stdout + done.stderr
    assert (site_of(venv) / "tool-1.0.dist-info" / "INSTALLER").read_text() == "pinship\n"
