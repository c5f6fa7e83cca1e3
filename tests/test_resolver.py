"""uv as the joint solve's resolver: the same inputs give the same pins and hashes as pip-compile.

Both commands run as solve.py runs pip-compile: in a work folder holding a copy of each layer's own
lines and `layers.union` (a `-r` of each), with the existing pins in the output file, against a
local index of our own; both outputs are read with universe.read_universe, as a lock reads them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from deploy import config as config_module
from deploy.errors import ConfigError, LockError
from deploy.lock import resolver
from deploy.lock.lockfile import Pin
from deploy.lock.universe import read_universe
from tests.lockproject import PYPROJECT, LockProject, Names
from tests.support.pipenv import isolated_pip_env
from tests.support.pkgindex import PackageIndex, build_sdist

pytestmark = pytest.mark.index

ORDER = ("base", "prod", "test", "dev")


@pytest.fixture(scope="module")
def names() -> Names:
    return Names()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, names: Names) -> Iterator[PackageIndex]:
    """A web app's shapes: a version as wheel and sdist, an sdist-only package, an extra, a tool that
    needs setuptools (pip-compile's "unsafe" package), a release for a newer Python, a pre-release."""
    with PackageIndex(tmp_path_factory.mktemp("resolver-index")) as served:
        n = names
        served.add(n.alpha, "1.0")
        served.add(n.alpha, "1.1")
        build_sdist(served.root, n.alpha, "1.1", (), None, None)
        served.add(n.alpha, "2.0b1")
        served.add(n.delta, "1.0", sdist_only=True)
        served.add(n.beta, "1.0", [f"{n.alpha}>=1", n.delta])
        served.add(n.beta, "1.1", [f"{n.alpha}>=1.1", n.delta])
        served.add(n.checker, "1.0", [f"{n.alpha}[fast]"])
        served.add(n.newpy, "1.0")
        served.add(n.newpy, "2.0", python_requires=">=3.99")
        served.add("setuptools", "70.0")
        served.add(n.linter, "1.0", ["setuptools>=60"])
        served.add(n.winonly, "1.0")
        served.add(n.epsilon, "1.0")
        served.add(n.epsilon, "1.1")
        served.add(n.gamma, "1.0", [n.epsilon])
        served.add(n.gamma, "1.1", [f"{n.epsilon}>=1.1"])
        yield served


def layers(n: Names) -> dict[str, str]:
    """Each layer's own lines, as solve.py copies them (its -r lines are the layer graph, not copied)."""
    return {
        "base": f"{n.alpha}\n",
        "prod": f"{n.beta}\n",
        "test": f"{n.checker}\n{n.newpy}\n",
        "dev": f'{n.linter}\n{n.winonly}; sys_platform == "win32"\n',
    }


def work_folder(root: Path, texts: Mapping[str, str], preferred: str | None = None) -> Path:
    root.mkdir(parents=True)
    for name, text in texts.items():
        (root / f"{name}.in").write_text(text, encoding="utf-8")
    (root / "layers.union").write_text("".join(f"-r {name}.in\n" for name in texts), encoding="utf-8")
    if preferred is not None:
        (root / "all.txt").write_text(preferred, encoding="utf-8")
    return root


def solve(name: str, work: Path, env: Mapping[str, str], **kwargs: object) -> dict[str, Pin]:
    """Run one resolver's command in `work`, insist that it worked, and read its universe."""
    command = resolver.command(name, output="all.txt", union_file="layers.union", env=env, **kwargs)  # type: ignore[arg-type]
    done = subprocess.run(command.argv, cwd=work, env=command.env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{name}: {done.stderr}{done.stdout}"
    return read_universe(work / "all.txt")


def both(tmp_path: Path, texts: Mapping[str, str], env: Mapping[str, str], preferred: str | None = None,
         **kwargs: object) -> tuple[dict[str, Pin], dict[str, Pin]]:
    return (solve(resolver.PIP_TOOLS, work_folder(tmp_path / "pip-tools", texts, preferred), env, **kwargs),
            solve(resolver.UV, work_folder(tmp_path / "uv", texts, preferred), env, **kwargs))


def locked(universe: Mapping[str, Pin]) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {key: (pin.version, tuple(sorted(pin.hashes))) for key, pin in universe.items()}


def graph(universe: Mapping[str, Pin]) -> dict[str, set[str]]:
    """Each pin's reasons as a set: uv lists `-r` sources after packages, pip-compile before them."""
    return {key: set(pin.via) for key, pin in universe.items()}


@pytest.fixture
def env(index: PackageIndex, tmp_path: Path) -> dict[str, str]:
    """pip pointed at the index the way a user does it (PIP_INDEX_URL), which uv does not read by itself."""
    return {**isolated_pip_env(index.url, tmp_path / "cache"), "UV_CACHE_DIR": str(tmp_path / "uv-cache")}


def test_uv_locks_the_same_pins_hashes_and_reasons_as_pip_compile_for_four_layers(
    names: Names, env: dict[str, str], tmp_path: Path
) -> None:
    pip_tools, uv = both(tmp_path, layers(names), env)
    assert locked(uv) == locked(pip_tools)
    assert graph(uv) == graph(pip_tools)
    n = names
    assert locked(uv)[n.alpha][0] == "1.1" and len(locked(uv)[n.alpha][1]) == 2  # wheel and sdist, no pre-release
    assert locked(uv)[n.newpy][0] == "1.0"  # 2.0 needs a newer Python than the one solved for
    assert "setuptools" in uv and n.delta in uv  # the "unsafe" package, and the sdist-only one
    assert n.winonly not in uv  # its marker excludes this machine, for both


def test_both_keep_the_existing_pins_and_move_only_the_package_named_for_upgrade(
    names: Names, env: dict[str, str], tmp_path: Path
) -> None:
    n = names
    existing = f"{n.alpha}==1.0\n{n.beta}==1.0\n"
    pip_tools, uv = both(tmp_path / "kept", layers(names), env, existing)
    assert locked(uv) == locked(pip_tools)
    assert (uv[n.alpha].version, uv[n.beta].version) == ("1.0", "1.0")

    pip_tools, uv = both(tmp_path / "upgraded", layers(names), env, existing, upgrade=[n.alpha])
    assert locked(uv) == locked(pip_tools)
    assert (uv[n.alpha].version, uv[n.beta].version) == ("1.1", "1.0")


def test_uv_may_move_what_an_upgraded_package_needs_where_pip_compile_keeps_both(
    names: Names, env: dict[str, str], tmp_path: Path
) -> None:
    """The difference in the solve itself (README): gamma 1.1 needs epsilon>=1.1, and epsilon 1.0
    (needed by gamma alone) is pinned. pip-compile holds every other existing pin, so gamma stays at
    1.0; uv's preferences give way, so gamma and the epsilon it needs both move. (When uv decides
    the pinned package first, as it does for a direct requirement, it keeps both, as pip-compile.)"""
    n = names
    existing = f"{n.gamma}==1.0\n{n.epsilon}==1.0\n"
    pip_tools, uv = both(tmp_path, {"base": f"{n.gamma}\n"}, env, existing, upgrade=[n.gamma])
    assert (pip_tools[n.gamma].version, pip_tools[n.epsilon].version) == ("1.0", "1.0")
    assert (uv[n.gamma].version, uv[n.epsilon].version) == ("1.1", "1.1")


def test_an_index_named_in_a_layer_wins_over_pip_index_url_and_compile_options_for_uv_as_for_pip(
    names: Names, index: PackageIndex, env: dict[str, str], tmp_path: Path
) -> None:
    n = names
    with PackageIndex(tmp_path / "mirror") as mirror:
        mirror.add(n.alpha, "3.0")
        texts = {"base": f"--index-url {mirror.url}\n{n.alpha}\n"}
        pip_tools, uv = both(tmp_path / "env", texts, env, file_options=[f"--index-url {mirror.url}"])
        assert locked(uv) == locked(pip_tools)
        assert uv[n.alpha].version == "3.0"
        pip_tools, uv = both(tmp_path / "options", texts, env, options=["--index-url", index.url],
                             file_options=[f"--index-url {mirror.url}"])
    assert locked(uv) == locked(pip_tools)
    assert uv[n.alpha].version == "3.0"


def test_uv_weighs_every_index_as_pip_does_not_only_the_first_that_has_the_package(
    names: Names, env: dict[str, str], tmp_path: Path
) -> None:
    """uv's own default would take alpha from the extra index (searched first) alone: 0.9."""
    n = names
    with PackageIndex(tmp_path / "extra") as extra:
        extra.add(n.alpha, "0.9")
        texts = {"base": f"--extra-index-url {extra.url}\n{n.alpha}\n"}
        pip_tools, uv = both(tmp_path, texts, env, file_options=[f"--extra-index-url {extra.url}"])
    assert locked(uv) == locked(pip_tools)
    assert uv[n.alpha].version == "1.1"


def test_pip_no_index_turns_off_even_an_index_a_layer_names_for_uv_as_for_pip(tmp_path: Path) -> None:
    env = isolated_pip_env(None, tmp_path / "cache")
    command = resolver.command(resolver.UV, output="all.txt", union_file="layers.union", env=env,
                               file_options=["--index-url https://mirror.example/simple"])
    assert "--no-index" in command.argv


def test_uv_is_given_no_index_when_pip_is(names: Names, index: PackageIndex, tmp_path: Path) -> None:
    env = isolated_pip_env(None, tmp_path / "cache")
    command = resolver.command(resolver.UV, output="all.txt", union_file="layers.union", env=env)
    assert "--no-index" in command.argv
    assert "UV_DEFAULT_INDEX" not in command.env
    with_url = resolver.command(resolver.UV, output="all.txt", union_file="layers.union",
                                env=isolated_pip_env(index.url, tmp_path / "cache"))
    # In the environment, not the arguments: an index URL may hold a password, and `ps` shows arguments.
    assert with_url.env["UV_DEFAULT_INDEX"] == index.url
    assert index.url not in " ".join(with_url.argv)


def test_uv_reads_none_of_this_machines_uv_settings(names: Names, env: dict[str, str], tmp_path: Path) -> None:
    n = names
    work = work_folder(tmp_path / "uv", {"base": f"{n.alpha}\n"})
    (work / "uv.toml").write_text('prerelease = "allow"\n', encoding="utf-8")
    (work / "pyproject.toml").write_text('[tool.uv]\nprerelease = "allow"\n', encoding="utf-8")
    loud = {**env, "UV_PRERELEASE": "allow", "UV_EXTRA_INDEX_URL": "http://127.0.0.1:9/simple/"}
    command = resolver.command(resolver.UV, output="all.txt", union_file="layers.union", env=loud)
    assert "UV_PRERELEASE" not in command.env and "UV_EXTRA_INDEX_URL" not in command.env
    assert command.env["UV_CACHE_DIR"] == env["UV_CACHE_DIR"]  # where to cache is not what to pick
    assert command.note() == ("this machine's uv and pip settings are not used for a lock (only the index and how "
                              "to reach it are): UV_EXTRA_INDEX_URL, UV_PRERELEASE")
    done = subprocess.run(command.argv, cwd=work, env=command.env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert read_universe(work / "all.txt")[n.alpha].version == "1.1"  # not 2.0b1


def test_a_lock_header_names_the_version_of_the_uv_that_ran_not_of_a_package_beside_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A trial's uv was a symlink on PATH: no `uv` distribution beside Python, so the header said
    # `uv unknown` in every committed lock. The binary says which it is.
    fake = tmp_path / "uv"
    fake.write_text("#!/bin/sh\necho 'uv 9.9.9 (fake 2026-12-04)'\n", encoding="utf-8")
    fake.chmod(0o755)
    monkeypatch.setattr(resolver, "find_uv", lambda **where: fake)
    assert resolver.uv_version({}) == "9.9.9"
    fake.write_text("#!/bin/sh\nexit 3\n", encoding="utf-8")
    assert resolver.uv_version({}) == "unknown"


def test_compile_options_reach_uv_in_its_spelling_and_one_it_lacks_is_refused_by_name() -> None:
    assert resolver.uv_options(["--pre", "--index-url=https://mirror.example/simple", "-f", "wheels",
                                "--no-emit-index-url"]) == [
        "--prerelease", "allow", "--default-index", "https://mirror.example/simple", "--find-links", "wheels"]
    with pytest.raises(LockError) as caught:
        resolver.uv_options(["--max-rounds", "20"])
    assert caught.value.message == (
        "[tool.deploy] compile-options: --max-rounds is a pip-compile option uv has no equivalent for")
    assert caught.value.fix == 'remove it, or set resolver = "pip-tools" in pyproject.toml [tool.deploy]'


def test_the_pip_tools_command_is_the_one_solve_runs() -> None:
    command = resolver.command(resolver.PIP_TOOLS, output="all.txt", union_file="layers.union",
                               options=["--pre"], upgrade=["alpha"], python="/py", env={})
    assert command.argv == [
        "/py", "-m", "piptools", "compile", "--generate-hashes", "--strip-extras", "--allow-unsafe",
        "--no-emit-index-url", "--no-emit-find-links", "--no-emit-trusted-host", "--no-emit-options",
        "--resolver=backtracking", "--no-config", "--pre", "--annotation-style=line", "--no-header", "-v",
        "-o", "all.txt", "layers.union", "--upgrade-package", "alpha"]


def test_without_uv_the_lock_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(LockError) as caught:
        resolver.find_uv(beside=tmp_path, path=str(tmp_path))
    assert str(caught.value) == (
        f'resolver = "uv" needs uv, which is neither in {tmp_path} nor on PATH\n'
        f'  fix: install it beside this Python: {tmp_path}/python -m pip install uv; then lock it for every clone: '
        'nox -s add -- --layer dev uv (or set resolver = "pip-tools" in pyproject.toml [tool.deploy])')


def test_the_resolver_setting_defaults_to_pip_tools_and_refuses_anything_else(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.deploy]\n", encoding="utf-8")
    assert config_module.load(tmp_path).resolver == "pip-tools"
    pyproject.write_text('[tool.deploy]\nresolver = "uv"\n', encoding="utf-8")
    assert config_module.load(tmp_path).resolver == "uv"
    pyproject.write_text('[tool.deploy]\nresolver = "poetry"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        config_module.load(tmp_path)
    assert str(caught.value) == (
        'pyproject.toml [tool.deploy]: resolver = "poetry": expected one of "pip-tools", "uv"\n'
        '  fix: resolver = "pip-tools" (the default) or resolver = "uv" (needs uv installed)')


def test_resolver_uv_in_pyproject_makes_nox_s_lock_write_the_same_locks_as_pip_tools(
    index: PackageIndex, names: Names, tmp_path: Path, env: dict[str, str]
) -> None:
    # The setting reaches the lock itself: the same project locked with each resolver gives the same
    # lock files, byte for byte below the header line that names the tool.
    with_pip, with_uv = _projects(names, tmp_path)
    said = {project.root.name: project.lock(env=env).stdout for project in (with_pip, with_uv)}
    assert "with uv pip compile" in said["uv"] and "with uv pip compile" not in said["pip"]
    for name in ORDER:
        lock = f"{name}.txt"
        body = [line for line in with_pip.read(lock).splitlines() if not line.startswith("#")]
        assert body == [line for line in with_uv.read(lock).splitlines() if not line.startswith("#")], lock
    done = with_uv.run("verify", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    # uv is in no lock of this project: a fresh clone would not have it.
    warning = ("warning: resolver = \"uv\", but no layer's lock holds uv, so a fresh clone will not have it; lock it "
               "for every clone: nox -s add -- --layer dev uv")
    assert warning in said["uv"].splitlines() and warning not in said["pip"]
    # Turned on over pip-tools' locks, the setting changes nothing until a layer changes, and says so.
    pyproject = with_pip.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'resolver = "uv"\n')
    again = with_pip.lock(env=env).stdout.splitlines()
    assert ('note: base, prod, test, dev were solved by pip-tools; resolver = "uv" solves the next lock that changes '
            "a layer") in again
    assert not [line for line in again if "needs uv" in line]


def test_a_lock_with_nothing_to_do_says_when_uv_is_missing_for_the_next_one(
    index: PackageIndex, names: Names, tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A trial: with resolver = "uv" and no uv, lock and verify said nothing until a layer changed.
    from deploy.lock import solve

    with_pip, _ = _projects(names, tmp_path)
    with_pip.lock(env=env)
    pyproject = with_pip.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'resolver = "uv"\n')

    def no_uv(**where: object) -> Path:
        raise LockError('resolver = "uv" needs uv, which is neither in /x nor on PATH', fix="install it")

    monkeypatch.setattr(resolver, "find_uv", no_uv)
    said: list[str] = []
    solve.lock(with_pip.config(), env=env, log=said.append)

    assert ('warning: resolver = "uv" needs uv, which is neither in /x nor on PATH: the next lock that changes a '
            "layer needs it") in said


def test_with_uv_the_pylock_step_reads_the_pages_while_uv_still_solves_and_writes_pip_tools_files(
    index: PackageIndex, names: Names, tmp_path: Path, env: dict[str, str]
) -> None:
    # uv reads the index for itself, so the pylock step must fetch each locked project's page: it
    # starts with the layers' own requirements while uv solves (lock/pylocks.py ReadAhead), and the
    # one-run proof (uvreport.py) reads the same fetches, never a page twice.
    with_pip, with_uv = _projects(names, tmp_path)
    by_pip = with_pip.lock(env=env)
    index.visits.clear()
    done = with_uv.lock(env=env)
    visits = list(index.visits)

    assert "resolving 4 layers together with uv pip compile" in done.stdout + done.stderr
    # Each names the index it read, once, in the same words.
    said = [(by_pip.stdout + by_pip.stderr).splitlines(), (done.stdout + done.stderr).splitlines()]
    assert [[line for line in lines if line.startswith("index: ")] for lines in said] == [[f"index: {index.url}"]] * 2
    for layer in ORDER:
        assert with_uv.read(f"pylock.{layer}.toml") == with_pip.read(f"pylock.{layer}.toml"), layer
    ours = [path for path, agent in visits if agent == "pinship"]
    assert sorted(ours) == sorted(set(ours)), "each page is fetched once"
    assert f"/simple/{names.alpha}/" in ours and f"/simple/{names.linter}/" in ours
    first_ours = next(at for at, (_, agent) in enumerate(visits) if agent == "pinship")
    last_uv = max(at for at, (_, agent) in enumerate(visits) if agent.startswith("uv/"))
    assert first_ours < last_uv, "the layers' own requirements were read while uv was solving"


def _projects(names: Names, tmp_path: Path) -> tuple[LockProject, LockProject]:
    """The four layers as projects: one locking with pip-tools, one with `resolver = "uv"`."""
    below = {"base": "", "prod": "-r base.in\n", "test": "-r prod.in\n", "dev": "-r test.in\n"}
    texts = {f"{name}.in": below[name] + text for name, text in layers(names).items()}
    with_pip = LockProject.create(tmp_path / "pip", texts)
    with_uv = LockProject.create(tmp_path / "uv", texts,
                                 pyproject=PYPROJECT.format(name="lockproject") + 'resolver = "uv"\n')
    return with_pip, with_uv
