"""A throwaway adopter project for the deploy tests, and helpers to look at what landed on hosts.

The project is what a team adopting the tool has: a pyproject.toml with `[project]` and
`[tool.deploy]`, a tasks.py of one line, requirements/{base,prod,test}.in locked by the real
`python -m deploy lock` against a local index, and an app package. Its build backend is a tiny
stdlib-only one kept in the tree, so the app's wheel builds offline and byte for byte the same.

Tests run the tasks the way a user does, `invoke deploy --env staging` in a subprocess, and judge
the result by exit code, output and the files on the hosts. The locked template is made
once per session and copied, so each test module has its own checkout.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.lock.lockfile import parse as parse_lock
from tests.support import pkgindex
from tests.support.pipenv import isolated_pip_env
from tests.support.pkgindex import PackageIndex
from tests.support.sshd import SshCluster, SshHost, require_sshd, unique_deploy_path

APP = "demoapp"
INVOKE = str(Path(sys.executable).with_name("invoke"))
# The layers: base needs alpha (which needs beta); the deploy layer adds gamma, published only as
# an sdist, so the deploy must build its wheel; the test layer adds delta, which never ships.
LAYERS = {
    "base.in": "alpha\n",
    "prod.in": "-r base.in\ngamma\n",
    "test.in": "-r prod.in\ndelta\n",
}
SHIPPED = {"alpha": "1.0", "beta": "1.0", "gamma": "1.0"}
HEALTHCHECK = f"python -c 'import {APP}, alpha, beta, gamma'"
# Asks a venv's own Python what it holds (run with -I, so nothing but the venv is on sys.path).
INSTALLED = "import importlib.metadata as m, json; print(json.dumps({d.name: d.version for d in m.distributions()}))"

_BACKEND_HOOKS = '''

def _project():
    with open("pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    return project["name"], project["version"], project.get("dependencies", [])


def _files(name):
    files = {}
    for top, dirs, names in os.walk(_dist_name(name)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for filename in names:
            path = os.path.join(top, filename).replace(os.sep, "/")
            with open(path, "rb") as handle:
                files[path] = handle.read()
    return files


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name, version, dependencies = _project()
    metadata = "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (name, version)
    metadata += "".join("Requires-Dist: %s\\n" % line for line in dependencies)
    filename, data = _wheel_archive(name, version, metadata, _files(name))
    with open(os.path.join(wheel_directory, filename), "wb") as handle:
        handle.write(data)
    return filename
'''


def backend_source() -> str:
    """The app's PEP 517 backend: the index's own deterministic wheel writer, fed from pyproject."""
    shared = [inspect.getsource(f) for f in (pkgindex._dist_name, pkgindex._wheel_archive)]
    return "\n\n".join([pkgindex._BACKEND_HEADER + "import tomllib\n", *shared, _BACKEND_HOOKS])


@dataclass
class Outcome:
    """A finished task run: exit code, stdout and stderr together, and how long it took."""

    code: int
    output: str
    seconds: float

    def summary(self) -> dict[str, dict[str, str]]:
        """The per-host summary table, as {host: {release, result, serves, seconds, sent}}."""
        lines = self.output.splitlines()
        start = next((i for i, line in enumerate(lines) if re.match(r"host\s+release\s+result", line)), None)
        assert start is not None, f"no summary table in:\n{self.output}"
        rows: dict[str, dict[str, str]] = {}
        for line in lines[start + 1:]:
            if not line.strip():
                break
            cells = re.split(r"\s{2,}", line.strip())
            rows[cells[0]] = dict(zip(("release", "result", "serves", "seconds", "sent"), cells[1:], strict=True))
        return rows

    def assert_clean(self) -> None:
        """Whatever happened, the user saw messages, never a Python traceback."""
        assert "Traceback" not in self.output, self.output


class DeployProject:
    """An adopter project on disk, with the environment its tasks run in."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.versions = 0

    @property
    def pyproject(self) -> Path:
        return self.root / "pyproject.toml"

    def write_pyproject(self, version: str = "1.0", environments: str = "") -> None:
        self.pyproject.write_text(
            textwrap.dedent(
                f"""\
                [build-system]
                requires = []
                build-backend = "_backend"
                backend-path = ["."]

                [project]
                name = "{APP}"
                version = "{version}"

                [tool.deploy]
                requirements = "requirements"
                deploy-layer = "prod"
                """
            )
            + environments,
            encoding="utf-8",
        )

    def set_version(self, version: str) -> None:
        """Change the app's version (and so its wheel and the release), as a developer would."""
        text = self.pyproject.read_text(encoding="utf-8")
        self.pyproject.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', text), encoding="utf-8")
        (self.root / APP / "__init__.py").write_text(f'__version__ = "{version}"\n', encoding="utf-8")

    def new_version(self) -> str:
        """Move the app to a version no earlier deploy used, so its release is staged for real."""
        self.versions += 1
        version = f"1.{self.versions}"
        self.set_version(version)
        return version

    def configure(self, environments: str) -> None:
        """Replace the [tool.deploy.environments.*] tables, keeping the version."""
        text = self.pyproject.read_text(encoding="utf-8")
        version = re.search(r'(?m)^version = "(.*)"$', text)
        assert version is not None
        self.write_pyproject(version[1], environments)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start `invoke ARGS` in the project, as a user would from its folder, without waiting."""
        return subprocess.Popen(
            [INVOKE, *args], cwd=self.root, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def invoke(self, *args: str, timeout: float = 180) -> Outcome:
        """Run `invoke ARGS` to the end and return what the user would have seen."""
        return finish(self.start(*args), timeout)

    def deploy(self, *args: str, env: str = "staging", timeout: float = 180) -> Outcome:
        return self.invoke("deploy", "--env", env, *args, timeout=timeout)

    def deploy_ok(self, *args: str, env: str = "staging") -> Outcome:
        outcome = self.deploy(*args, env=env)
        assert outcome.code == 0, outcome.output
        return outcome

    def lock_pins(self, layer: str = "prod") -> dict[str, str]:
        """name -> version of a layer's lock, read the way the tool reads it."""
        return {name: pin.version for name, pin in parse_lock(self.root / "requirements" / f"{layer}.txt").pins.items()}


def finish(process: subprocess.Popen[str], timeout: float = 180) -> Outcome:
    """Wait for a task started with DeployProject.start; return what the user saw."""
    started = time.monotonic()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"{process.args!r} still ran after {timeout} s:\n{output}") from None
    outcome = Outcome(process.returncode, output, time.monotonic() - started)
    outcome.assert_clean()
    return outcome


def wait_for_output(process: subprocess.Popen[str], needle: str, timeout: float = 60) -> str:
    """Read a running task's output up to the first line holding `needle`; return what was read."""
    assert process.stdout is not None
    seen: list[str] = []
    watchdog = threading.Timer(timeout, process.kill)  # readline() has no timeout of its own
    watchdog.start()
    try:
        while line := process.stdout.readline():
            seen.append(line)
            if needle in line:
                return "".join(seen)
    finally:
        watchdog.cancel()
    process.kill()
    raise AssertionError(f"never saw {needle!r} (within {timeout} s?); the output:\n{''.join(seen)}")


def environment_toml(name: str, cluster: SshCluster, hosts: list[SshHost] | None = None, **settings: object) -> str:
    """A [tool.deploy.environments.NAME] table for the cluster's hosts (or some of them).

    Connections are not kept between runs (keep-alive = 0) unless a test asks: most tests change
    hosts between runs and check what a fresh connection finds. A setting given as None is left
    out, so the default applies.
    """
    settings = {"keep_alive": 0, **settings}
    values: dict[str, object] = {
        "hosts": [h.spec() for h in (cluster.hosts if hosts is None else hosts)],
        "path": cluster.deploy_path,
        "known-hosts": "known_hosts",
        "identity": str(cluster.client_key),
        **{key.replace("_", "-"): value for key, value in settings.items() if value is not None},
    }
    lines = [f"\n[tool.deploy.environments.{name}]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def offline_env(root: Path) -> dict[str, str]:
    """The environment tasks run in: pip sees no index and none of this machine's configuration."""
    return isolated_pip_env(None, root.parent / "pip-cache")


def make_project(root: Path, index_url: str) -> DeployProject:
    """Write the adopter project and lock its layers with the real `python -m deploy lock`."""
    project = DeployProject(root, isolated_pip_env(index_url, root.parent / "pip-cache"))
    root.mkdir(parents=True)
    project.write_pyproject()
    (root / "_backend.py").write_text(backend_source(), encoding="utf-8")
    (root / APP).mkdir()
    (root / APP / "__init__.py").write_text('__version__ = "1.0"\n', encoding="utf-8")
    (root / "tasks.py").write_text("from deploy.tasks import namespace as ns\n", encoding="utf-8")
    for name, text in LAYERS.items():
        (root / "requirements" / name).parent.mkdir(exist_ok=True)
        (root / "requirements" / name).write_text(text, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "deploy", "--root", str(root), "lock"], env=project.env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return project


# What is on a host, read through the host itself (a disk-limited host's files are invisible outside).


def sh(host: SshHost, command: str) -> str:
    done = host.run(command)
    assert done.returncode == 0, f"{host.address}: {command}: {done.stdout}{done.stderr}"
    return done.stdout


def live(host: SshHost, path: str) -> str | None:
    """The release `current` points at, or None when there is no `current`."""
    done = host.run(f"readlink {shlex.quote(path + '/current')}")
    if done.returncode != 0:
        return None
    target = done.stdout.strip()
    assert target.startswith("releases/"), f"{host.address}: current -> {target}"
    return target.removeprefix("releases/")


def releases(host: SshHost, path: str) -> set[str]:
    return set(sh(host, f"ls -1 {shlex.quote(path)}/releases 2>/dev/null || true").split())


def store(host: SshHost, path: str) -> set[str]:
    """The sha256 folders of the host's wheel store."""
    listing = sh(host, f"ls -1 {shlex.quote(path)}/wheels 2>/dev/null || true").split()
    return {name for name in listing if len(name) == 64}


def read(host: SshHost, path: str) -> str:
    return sh(host, f"cat {shlex.quote(path)}")


def log_lines(host: SshHost, path: str) -> list[dict[str, Any]]:
    text = sh(host, f"cat {shlex.quote(path)}/deploy.log 2>/dev/null || true")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def tree(host: SshHost, path: str) -> list[str]:
    """Every file and folder under the deploy path with its size: a fingerprint of the host's state."""
    return sorted(sh(host, f"cd {shlex.quote(path)} && find . -printf '%p %s %y\\n'").splitlines())


def installed(host: SshHost, path: str) -> dict[str, str]:
    """name -> version of what the live release's venv holds, asked of the venv's own Python."""
    out = sh(host, f"{shlex.quote(path)}/current/venv/bin/python -I -c {shlex.quote(INSTALLED)}")
    found: dict[str, str] = json.loads(out)
    return found


def assert_serving_complete_release(host: SshHost, path: str) -> str:
    """`current` exists and points at a release that finished staging; return its id."""
    release = live(host, path)
    assert release is not None, f"{host.address}: {path}/current is missing"
    complete = host.run(f"test -f {shlex.quote(path)}/releases/{release}/.complete")
    assert complete.returncode == 0, f"{host.address}: current -> {release}, which is not complete"
    return release


def assert_unlocked(host: SshHost, path: str) -> None:
    assert host.run(f"test -e {shlex.quote(path)}/.lock").returncode != 0, f"{host.address}: {path}/.lock was left"


def wipe(host: SshHost, path: str) -> None:
    """Forget every deploy on a host: an empty deploy path, as on a new machine."""
    sh(host, f"find {shlex.quote(path)} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +")


# The template is locked, and its build cache filled, once per test session; the index that
# served it is gone afterwards, so a deploy that tried to reach an index would fail.

_TEMPLATES: dict[Path, DeployProject] = {}


def require_sshd_or_skip() -> None:
    reason = require_sshd()
    if reason:
        pytest.skip(reason)


def template(factory: pytest.TempPathFactory) -> DeployProject:
    base = factory.getbasetemp()
    if base not in _TEMPLATES:
        folder = factory.mktemp("deploy-template")
        with PackageIndex(folder / "index") as index:
            index.add("alpha", "1.0", ["beta>=1"])
            index.add("beta", "1.0")
            index.add("gamma", "1.0", sdist_only=True)
            index.add("delta", "1.0")
            project = make_project(folder / "app", index.url)
            warm = [sys.executable, "-c", "import deploy.release.build as b, deploy.config as c; b.build(c.load())"]
            proc = subprocess.run(warm, cwd=project.root, env=project.env, capture_output=True, text=True, check=False)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        project.env = offline_env(project.root)
        _TEMPLATES[base] = project
    return _TEMPLATES[base]


def new_project(factory: pytest.TempPathFactory, name: str) -> DeployProject:
    """A fresh checkout of the locked template, its build cache included."""
    root = factory.mktemp(name) / "app"
    shutil.copytree(template(factory).root, root, symlinks=True)
    return DeployProject(root, offline_env(root))


def new_cluster(factory: pytest.TempPathFactory, count: int = 3, disk_limit_mb: int | None = None) -> SshCluster:
    """`count` sshd hosts on 127.0.0.2 upwards sharing one deploy path, each its own view of it."""
    require_sshd_or_skip()
    return SshCluster(factory.mktemp("sshd"), count, deploy_path=unique_deploy_path(), disk_limit_mb=disk_limit_mb)


def ssh_project(factory: pytest.TempPathFactory, cluster: SshCluster, name: str) -> DeployProject:
    """The project with `staging` (every host) and `production` (confirm = true) environments."""
    project = new_project(factory, name)
    shutil.copyfile(cluster.known_hosts, project.root / "known_hosts")
    project.configure(staging_toml(cluster))
    return project


def staging_toml(cluster: SshCluster) -> str:
    """`staging` with a health check, and `production` on the same hosts, which asks first."""
    return (environment_toml("staging", cluster, healthcheck=HEALTHCHECK)
            + environment_toml("production", cluster, confirm=True))


def reset(project: DeployProject, cluster: SshCluster, *, wipe_hosts: bool = False) -> str:
    """Put every host on the project's release of version 1.0 (from empty hosts with wipe_hosts).

    A test that left a host down, its key rotated, or its lock held (a hung host cannot be
    unlocked) does not decide how the next one starts.
    """
    for host in cluster.hosts:
        if host.pid is None:
            host.start()
        if wipe_hosts:
            wipe(host, cluster.deploy_path)
        else:
            sh(host, f"rm -rf {shlex.quote(cluster.deploy_path)}/.lock")
    cluster.write_known_hosts(project.root / "known_hosts")
    project.configure(staging_toml(cluster))
    project.set_version("1.0")
    project.deploy_ok()
    ids = {assert_serving_complete_release(host, cluster.deploy_path) for host in cluster.hosts}
    assert len(ids) == 1, ids
    return ids.pop()
