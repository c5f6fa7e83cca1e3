"""How long verify and lock take, next to the recompile-and-diff check pip-tools users run today.

    .venv/bin/python benchmarks/lock.py [--runs N] [--sizes small,typical]

It builds four-layer projects (base, prod, test, dev) of two sizes, a small one (17 tiny packages,
one sdist-only) and one the size of a real web app's (54 packages locked in prod, 66 in dev, a few
sdist-only), each served
by its own local index on 127.0.0.1, with pip isolated from this machine's configuration,
then times each operation N times, round by round, and prints the medians, and ratios taken from
this one run.
pip's and pip-tools' caches are shared by every contender and warm after the first run, so the
resolver work, not the network, is what is compared.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script from anywhere: the test support package lives in the repository, not the venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy import config as config_module
from deploy.lock.freshness import COMPILE_OPTIONS
from deploy.lock.layers import load as load_layers
from deploy.lock.lockfile import parse
from deploy.lock.verify import check
from deploy.scaffold import NOXFILE
from tests.support.pipenv import isolated_pip_env
from tests.support.pkgindex import PackageIndex

# name -> (requirements, sdist only): a small web app's dependency tree.
PACKAGES: dict[str, tuple[list[str], bool]] = {
    "markup": ([], False),
    "templating": (["markup>=1"], False),
    "dbdriver": ([], True),
    "orm": (["dbdriver>=1"], False),
    "util": ([], False),
    "web": (["templating>=1", "util"], False),
    "server": (["web>=1"], False),
    "metrics": (["util"], False),
    "plugins": ([], False),
    "iniconfig": ([], False),
    "testrunner": (["plugins>=1", "iniconfig"], False),
    "factory": (["orm", "util"], False),
    "mocklib": ([], False),
    "astlib": ([], False),
    "linter": (["astlib>=1"], False),
    "typechecker": (["astlib", "typing-ext"], False),
    "typing-ext": ([], False),
}
LAYERS = {
    "base.in": "web\norm\n",
    "prod.in": "-r base.in\nserver\nmetrics\n",
    "test.in": "-r prod.in\ntestrunner\nfactory\nmocklib\n",
    "dev.in": "-r test.in\nlinter\ntypechecker\n",
}
# Nox's own floor: a session that does nothing, loaded from the same noxfile. No nox session can be
# faster, so `anchor / this` is the most any `nox -s ...` could achieve on this machine.
FLOOR_SESSION = '''

import nox


@nox.session(python=False)
def empty(session: nox.Session) -> None:
    """Does nothing: the benchmark's measure of nox's own start-up."""
'''
PYPROJECT = '[project]\nname = "bench"\nversion = "1.0"\n\n[tool.deploy]\nrequirements = "requirements"\n'


def typical_project(count: int = 80) -> tuple[dict[str, tuple[list[str], bool]], dict[str, str]]:
    """A project the size of a real web app's: `count` packages on the index, each needing up to
    three others, made up deterministically; prod locks 54 of them, dev 66."""
    names = [f"pkg{i:02d}" for i in range(count)]
    packages: dict[str, tuple[list[str], bool]] = {}
    for i, name in enumerate(names):
        # Each package needs 0-3 packages further down the list: a tree with shared leaves.
        later = names[i + 1:]
        step = 7 + i % 5
        needs = [later[(j * step + i) % len(later)] for j in range(i % 4)] if later else []
        packages[name] = (sorted(set(needs)), i % 23 == 5)  # a few sdist-only, as in real projects
    direct = {"base.in": names[0:6], "prod.in": names[6:10], "test.in": names[10:18], "dev.in": names[18:28]}
    parents = {"base.in": "", "prod.in": "-r base.in\n", "test.in": "-r prod.in\n", "dev.in": "-r test.in\n"}
    layers = {layer: parents[layer] + "".join(f"{n}\n" for n in direct[layer]) for layer in direct}
    return packages, layers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions per operation (default 5)")
    parser.add_argument("--sizes", default="small,typical",
                        help="projects to measure: small (17 packages), typical (66) (default both)")
    args = parser.parse_args()
    projects = {"small": (PACKAGES, LAYERS), "typical": typical_project()}
    for size in args.sizes.split(","):
        packages, layers = projects[size]
        with tempfile.TemporaryDirectory(prefix="pinship-bench-") as tmp, \
                PackageIndex(Path(tmp) / "index") as index:
            for name, (requires, sdist_only) in packages.items():
                for version in ("1.0", "1.1"):
                    index.add(name, version, requires, sdist_only=sdist_only)
            env = isolated_pip_env(index.url, Path(tmp) / "cache")
            env["HOME"] = str(Path(tmp) / "home")
            root = _project(Path(tmp) / "project", layers)
            bench = Bench(root, env, Path(tmp))
            bench.prepare()
            pinned = len(parse(root / "requirements" / "dev.txt").pins)
            results = bench.measure(args.runs)
        _print(results, args.runs, f"{size} project: {len(layers)} layers, {pinned} packages in the top layer")
    return 0


def _project(root: Path, layers: dict[str, str]) -> Path:
    (root / "requirements").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (root / "noxfile.py").write_text(NOXFILE + FLOOR_SESSION, encoding="utf-8")
    for name, text in layers.items():
        (root / "requirements" / name).write_text(text, encoding="utf-8")
    return root


class Bench:
    def __init__(self, root: Path, env: dict[str, str], tmp: Path) -> None:
        self.root = root
        self.env = env
        self.tmp = tmp
        self.folder = root / "requirements"
        self.order = load_layers(root, self.folder).order
        self.nox = str(Path(sys.executable).parent / "nox")
        self.baseline = tmp / "pip-compile-baseline"

    def run(self, command: list[str], cwd: Path) -> None:
        done = subprocess.run(command, cwd=cwd, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")

    def prepare(self) -> None:
        """Lock once (warming caches) and make the pip-compile baseline the anchor diffs against."""
        self.run([sys.executable, "-m", "deploy", "lock"], self.root)
        shutil.copytree(self.folder, self.baseline, ignore=shutil.ignore_patterns("*.txt"))
        self.pip_compile_layers(self.baseline)
        if check(config_module.load(self.root)):
            raise SystemExit("the benchmark project does not verify after locking")

    def pip_compile_layers(self, folder: Path) -> None:
        # What a pip-tools user runs: one pip-compile per layer, bottom-up, with our options.
        for layer in self.order:
            self.run([sys.executable, "-m", "piptools", "compile", *COMPILE_OPTIONS, "--quiet",
                      "-o", f"{layer}.txt", f"{layer}.in"], folder)

    def verify_in_process(self) -> None:
        if check(config_module.load(self.root)):
            raise SystemExit("verify found problems")

    def recompile_and_diff(self) -> None:
        copy = self.tmp / "anchor"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(self.baseline, copy)
        self.pip_compile_layers(copy)
        # The diff is part of the workaround: it is how CI learns that a lock is stale.
        stale = [name for name in (f"{n}.txt" for n in self.order)
                 if not filecmp.cmp(copy / name, self.baseline / name, shallow=False)]
        if stale:
            raise SystemExit(f"recompile-and-diff found {stale} changed: the benchmark would not measure a no-op")

    def full_lock(self) -> None:
        for lock in self.folder.glob("*.txt"):
            lock.unlink()
        self.run([sys.executable, "-m", "deploy", "lock"], self.root)

    def bare_pip_compile(self) -> None:
        scratch = self.tmp / "bare"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(self.baseline, scratch, ignore=shutil.ignore_patterns("*.txt"))
        self.pip_compile_layers(scratch)

    def measure(self, runs: int) -> list[tuple[str, float]]:
        operations: list[tuple[str, Callable[[], None]]] = [
            ("nox -s verify (subprocess)", lambda: self.run([self.nox, "-s", "verify"], self.root)),
            ("deploy.lock.verify.check (in process)", self.verify_in_process),
            ("nox -s empty (nox's own start-up, the floor)", lambda: self.run([self.nox, "-s", "empty"], self.root)),
            ("nox -s lock, nothing changed", lambda: self.run([self.nox, "-s", "lock"], self.root)),
            ("python -m deploy lock, from scratch", self.full_lock),
            ("anchor: pip-compile each layer into a copy + diff", self.recompile_and_diff),
            ("bare pip-compile of each layer, from scratch", self.bare_pip_compile),
        ]
        # Round by round, every operation once per round: a busy spell on a shared machine then
        # slows every contender alike instead of all the runs of one of them.
        times: dict[str, list[float]] = {label: [] for label, _ in operations}
        for _ in range(runs):
            for label, operation in operations:
                started = time.perf_counter()
                operation()
                times[label].append(time.perf_counter() - started)
        for label, taken in times.items():
            print(f"  {label}: {', '.join(f'{t:.3f}' for t in taken)} s", file=sys.stderr)
        return [(label, statistics.median(taken)) for label, taken in times.items()]


def _print(results: list[tuple[str, float]], runs: int, title: str) -> None:
    median = dict(results)
    width = max(len(label) for label, _ in results)
    print(f"\n{title}; median of {runs} runs; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print(f"{'operation'.ljust(width)}  median")
    print(f"{'-' * width}  --------")
    for label, seconds in results:
        shown = f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
        print(f"{label.ljust(width)}  {shown:>8}")
    anchor = median["anchor: pip-compile each layer into a copy + diff"]
    ratios = [
        ("anchor / nox -s verify", anchor / median["nox -s verify (subprocess)"]),
        ("anchor / verify in process", anchor / median["deploy.lock.verify.check (in process)"]),
        ("anchor / nox -s empty (ceiling)", anchor / median["nox -s empty (nox's own start-up, the floor)"]),
        ("anchor / no-op nox -s lock", anchor / median["nox -s lock, nothing changed"]),
        ("full lock / bare pip-compile", median["python -m deploy lock, from scratch"]
         / median["bare pip-compile of each layer, from scratch"]),
    ]
    print("\nratios (this run)")
    for label, value in ratios:
        print(f"  {label.ljust(30)} {value:8.2f}x")


if __name__ == "__main__":
    sys.exit(main())
