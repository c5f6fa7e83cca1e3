"""How long verify, lock, upgrade and add take, next to what pip-tools and uv users run today.

    .venv/bin/python benchmarks/lock.py [--runs N] [--sizes small,webapp]

It builds four-layer projects (base, prod, test, dev) of two sizes, a small one (17 tiny packages,
one sdist-only) and a Django web app's (benchmarks/webapp.py: 99 packages with their real names and
edges, five sdist-only), each served by its own local index on 127.0.0.1, with pip isolated from
this machine's configuration, then times each operation N times, round by round (the sub-second
no-ops and bare uv five times a round), and prints the medians, and ratios taken from this one run,
each beside the issue's target where it has one.
pip's, pip-tools' and uv's caches are shared by every contender and warm after the first run (the
index lets archives be cached for good and answers a page's revalidation with 304, as a real index
does), so the resolver work, not the network, is what is compared.
"""

from __future__ import annotations

import argparse
import filecmp
import functools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Run as a script from anywhere: the test support package lives in the repository, not the venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import webapp
from deploy import config as config_module
from deploy.lock.freshness import COMPILE_OPTIONS
from deploy.lock.layers import load as load_layers
from deploy.lock.lockfile import parse
from deploy.lock.verify import check
from deploy.scaffold import NOXFILE
from tests.support.pipenv import isolated_pip_env
from tests.support.pkgindex import PackageIndex

REPO = Path(__file__).resolve().parents[1]
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
    "flagger": ([], False),  # in no layer: what the benchmark adds
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


@dataclass(frozen=True)
class Spec:
    """A benchmark project: what the index holds, the layers, and what `add` and `upgrade` change."""

    requires: dict[str, list[str]]
    sdist_only: set[str]
    too_new: set[str]  # whose 1.2 needs a Python no machine has
    layers: dict[str, str]
    add: tuple[str, str]  # (package, layer)
    upgrade: str  # locked at 1.0 before the upgrade is timed


SPECS = {
    "small": Spec({name: needs for name, (needs, _) in PACKAGES.items()},
                  {name for name, (_, sdist) in PACKAGES.items() if sdist}, set(), LAYERS, ("flagger", "prod"),
                  "metrics"),
    "webapp": Spec(webapp.REQUIRES, webapp.SDIST_ONLY, webapp.TOO_NEW, webapp.LAYERS, webapp.ADD, webapp.UPGRADE),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions per operation (default 5)")
    parser.add_argument("--sizes", default="small,webapp",
                        help="projects to measure: small (17 packages), webapp (99) (default both)")
    args = parser.parse_args()
    for size in args.sizes.split(","):
        spec = SPECS[size]
        with tempfile.TemporaryDirectory(prefix="pinship-bench-") as tmp, \
                PackageIndex(Path(tmp) / "index", cacheable=True) as index:
            _publish(index, spec)
            env = isolated_pip_env(index.url, Path(tmp) / "cache")
            env["HOME"] = str(Path(tmp) / "home")
            # The subprocesses run the code beside this script, as the in-process steps do (not the
            # checkout the venv's editable install points at, which may be another one's work tree).
            env["PYTHONPATH"] = str(REPO)
            # Bytecode as an installed package has it (pip compiles at install time): this machine sets
            # PYTHONDONTWRITEBYTECODE, which would make every run compile pinship's modules from source
            # while pip's and pip-tools' own come precompiled. Every contender's bytecode goes to one
            # private folder, written on the warm-up runs and read by the timed ones.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
            root = _project(Path(tmp) / "project", spec.layers)
            bench = Bench(root, env, Path(tmp), spec, index)
            bench.prepare()
            pinned = len(parse(root / "requirements" / "dev.txt").pins)
            results = bench.measure(args.runs)
        _print(results, args.runs, f"{size} project: {len(spec.layers)} layers, {pinned} packages in the top layer",
               small=size == "small")
    return 0


def _publish(index: PackageIndex, spec: Spec, versions: tuple[str, ...] = ("1.0", "1.1")) -> None:
    for name, requires in spec.requires.items():
        for version in versions:
            index.add(name, version, requires, sdist_only=name in spec.sdist_only)
        if name in spec.too_new:
            index.add(name, "1.2", requires, sdist_only=name in spec.sdist_only, python_requires=">=3.99")


def _project(root: Path, layers: dict[str, str]) -> Path:
    (root / "requirements").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (root / "noxfile.py").write_text(NOXFILE + FLOOR_SESSION, encoding="utf-8")
    for name, text in layers.items():
        (root / "requirements" / name).write_text(text, encoding="utf-8")
    return root


# Labels of the rows the ratios are taken from.
VERIFY = "python -m deploy verify (subprocess)"
NOX_VERIFY = "nox -s verify (subprocess)"
IN_PROCESS = "deploy.lock.verify.check (in process)"
EMPTY = "nox -s empty (nox's own start-up, the floor)"
NO_OP = "nox -s lock, nothing changed"
NO_OP_UV = 'python -m deploy lock, nothing changed, resolver = "uv"'
FULL = "python -m deploy lock, from scratch"
FULL_UV = 'python -m deploy lock, from scratch, resolver = "uv"'
UPGRADE = "python -m deploy upgrade PKG (one package)"
UPGRADE_UV = 'python -m deploy upgrade PKG (one package), resolver = "uv"'
ADD = "add PKG to a layer (deploy.lock.edit.add)"
ADD_UV = 'add PKG to a layer (deploy.lock.edit.add), resolver = "uv"'
ANCHOR = "anchor: pip-compile each layer into a copy + diff"
BARE = "bare pip-compile of each layer, bottom-up with -c"
BARE_UV = "bare uv pip compile of the union, from scratch"
BARE_UV_LAYERS = "bare uv pip compile of each layer, bottom-up with -c"
BARE_UNION = "bare pip-compile of the union, from scratch"
WRAPPED_UV = "floor: python starting that bare uv run (-v, piped), nothing else"
WRAPPED_UV_PAGES = "floor: the same, reading each locked package's index page meanwhile"
# Well under a second and changing nothing (bare uv writes into its own scratch folder).
SHORT = {VERIFY, NOX_VERIFY, IN_PROCESS, EMPTY, NO_OP, NO_OP_UV, BARE_UV, WRAPPED_UV, WRAPPED_UV_PAGES}
# The least any `python -m …` lock that hands the union to uv costs: this interpreter starts, starts
# uv with its -v log piped back (the one-run proof reads it), and waits; with page names, it also
# reads those index pages, eight at a time, while uv solves, as a lock that writes pylock files
# must (uv's output names no file's URL). No import of pinship, no parsing, no writing.
WRAPPER = """
import concurrent.futures, subprocess, sys, urllib.request
index, names, command = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
uv = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
def read(name):
    with urllib.request.urlopen(index + name + "/") as page:
        page.read()
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(read, names))
uv.communicate()
sys.exit(uv.returncode)
"""
SHORT_REPEAT = 5
Operation = tuple[str, Callable[[], None] | None, Callable[[], None] | None]  # label, untimed setup, timed step


class Bench:
    def __init__(self, root: Path, env: dict[str, str], tmp: Path, spec: Spec, index: PackageIndex) -> None:
        self.root = root
        self.env = env
        self.tmp = tmp
        self.spec = spec
        self.index = index
        self.folder = root / "requirements"
        self.order = load_layers(root, self.folder).order
        self.nox = str(Path(sys.executable).parent / "nox")
        self.uv = str(Path(sys.executable).parent / "uv")
        self.baseline = tmp / "pip-compile-baseline"
        self.saved = {state: tmp / f"state-{state}" for state in ("locked", "before-upgrade")}
        self.uv_root = tmp / "project-uv"
        self.locked_names: list[str] = []  # what wrapped_uv reads the pages of

    def run(self, command: list[str], cwd: Path) -> None:
        done = subprocess.run(command, cwd=cwd, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")

    def prepare(self) -> None:
        """Lock once (warming caches), save the states the timed steps start from, and make the
        pip-compile baseline the anchor diffs against."""
        name = self.spec.upgrade
        self.index.remove(name, "1.1")
        self.run([sys.executable, "-m", "deploy", "lock"], self.root)
        shutil.copytree(self.folder, self.saved["before-upgrade"])
        self.index.add(name, "1.1", self.spec.requires[name], sdist_only=name in self.spec.sdist_only)
        self.full_lock()
        shutil.copytree(self.folder, self.saved["locked"])
        shutil.copytree(self.folder, self.baseline, ignore=shutil.ignore_patterns("*.txt"))
        _constrain_by_lower_locks(self.baseline)
        self.pip_compile_layers(self.baseline)
        if check(config_module.load(self.root)):
            raise SystemExit("the benchmark project does not verify after locking")
        # Warm-up, untimed: writes the bytecode of what verify imports (see PYTHONPYCACHEPREFIX).
        self.run([sys.executable, "-m", "deploy", "verify"], self.root)
        self.run([self.nox, "-s", "verify", "empty"], self.root)
        if uv_wired():
            shutil.copytree(self.root, self.uv_root)
            pyproject = self.uv_root / "pyproject.toml"
            pyproject.write_text(pyproject.read_text(encoding="utf-8") + 'resolver = "uv"\n', encoding="utf-8")

    def restore(self, state: str, root: Path | None = None) -> None:
        folder = (root or self.root) / "requirements"
        for path in folder.iterdir():
            path.unlink()
        for path in self.saved[state].iterdir():
            shutil.copy2(path, folder / path.name)

    def pip_compile_layers(self, folder: Path) -> None:
        # What a pip-tools user runs: one pip-compile per layer, bottom-up, with our options.
        for layer in self.order:
            self.run([sys.executable, "-m", "piptools", "compile", *COMPILE_OPTIONS, "--quiet",
                      "-o", f"{layer}.txt", f"{layer}.in"], folder)

    def uv_command(self, output: str, source: str) -> list[str]:
        return [self.uv, "pip", "compile", "--no-config", "--generate-hashes", "--python", sys.executable,
                "--default-index", self.env["PIP_INDEX_URL"], "--quiet", "-o", output, source]

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

    def full_lock(self, root: Path | None = None) -> None:
        root = root or self.root
        # From scratch as an adopter's first lock is: no `.txt` and no pylock file yet.
        for lock in [*(root / "requirements").glob("*.txt"), *(root / "requirements").glob("pylock.*.toml")]:
            lock.unlink()
        self.run([sys.executable, "-m", "deploy", "lock"], root)

    def bare_pip_compile(self) -> None:
        scratch = self.tmp / "bare"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(self.baseline, scratch, ignore=shutil.ignore_patterns("*.txt"))
        self.pip_compile_layers(scratch)

    def bare_union(self) -> None:
        """One pip-compile of every layer at once: what a one-run lock cannot beat (pinship's own
        work comes on top of it)."""
        scratch = self.tmp / "bare-union"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(self.folder, scratch, ignore=shutil.ignore_patterns("*.txt", "*.toml"))
        (scratch / "layers.union").write_text("".join(f"-r {n}.in\n" for n in self.order), encoding="utf-8")
        self.run([sys.executable, "-m", "piptools", "compile", *COMPILE_OPTIONS, "--quiet", "-o", "all.txt",
                  "layers.union"], scratch)

    def bare_uv(self) -> None:
        """What a uv user runs for the same locks: one `uv pip compile` of every layer at once."""
        scratch = self.tmp / "bare-uv"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(self.folder, scratch, ignore=shutil.ignore_patterns("*.txt"))
        (scratch / "layers.union").write_text("".join(f"-r {n}.in\n" for n in self.order), encoding="utf-8")
        self.run(self.uv_command("all.txt", "layers.union"), scratch)

    def wrapped_uv_folder(self) -> None:
        """Untimed (the bare uv run's copying is timed: the floor errs low): a folder as bare_uv's."""
        scratch = self.tmp / "wrapped-uv"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(self.folder, scratch, ignore=shutil.ignore_patterns("*.txt"))
        (scratch / "layers.union").write_text("".join(f"-r {n}.in\n" for n in self.order), encoding="utf-8")
        self.locked_names = sorted({name for layer in self.order for name in parse(self.folder / f"{layer}.txt").pins})

    def wrapped_uv(self, pages: bool) -> None:
        """The floor of a uv lock in Python (WRAPPER): the bare uv run's command, from scratch as it is."""
        command = [arg for arg in self.uv_command("all.txt", "layers.union") if arg != "--quiet"] + ["-v"]
        names = " ".join(self.locked_names) if pages else ""
        self.run([sys.executable, "-c", WRAPPER, self.env["PIP_INDEX_URL"], names, *command], self.tmp / "wrapped-uv")

    def bare_uv_layers(self) -> None:
        """What a uv user with layered files runs: one `uv pip compile` per layer, bottom-up, each
        constrained by the locks below it (the pip-compile baseline's inputs)."""
        scratch = self.tmp / "bare-uv-layers"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(self.baseline, scratch, ignore=shutil.ignore_patterns("*.txt"))
        for layer in self.order:
            self.run(self.uv_command(f"{layer}.txt", f"{layer}.in"), scratch)

    def add(self, root: Path | None = None) -> None:
        package, layer = self.spec.add
        script = ("import sys; from deploy import config; from deploy.lock.edit import add; "
                  "add(config.load(), [sys.argv[1]], layer=sys.argv[2], log=lambda line: None)")
        self.run([sys.executable, "-c", script, package, layer], root or self.root)

    def measure(self, runs: int) -> list[tuple[str, float | None]]:
        locked = functools.partial(self.restore, "locked")
        uv_locked = functools.partial(self.restore, "locked", self.uv_root)
        wired = uv_wired()
        operations: list[Operation] = [
            (VERIFY, None, lambda: self.run([sys.executable, "-m", "deploy", "verify"], self.root)),
            (NOX_VERIFY, None, lambda: self.run([self.nox, "-s", "verify"], self.root)),
            (IN_PROCESS, None, self.verify_in_process),
            (EMPTY, None, lambda: self.run([self.nox, "-s", "empty"], self.root)),
            (NO_OP, None, lambda: self.run([self.nox, "-s", "lock"], self.root)),
            (FULL, None, self.full_lock),
            (FULL_UV, None, (lambda: self.full_lock(self.uv_root)) if uv_wired() else None),
            # What any `python -m deploy lock` costs before it solves anything: the floor of the row above.
            (NO_OP_UV, None, (lambda: self.run([sys.executable, "-m", "deploy", "lock"], self.uv_root))
             if uv_wired() else None),
            (UPGRADE, lambda: self.restore("before-upgrade"),
             lambda: self.run([sys.executable, "-m", "deploy", "upgrade", self.spec.upgrade], self.root)),
            (UPGRADE_UV, lambda: self.restore("before-upgrade", self.uv_root),
             (lambda: self.run([sys.executable, "-m", "deploy", "upgrade", self.spec.upgrade], self.uv_root))
             if wired else None),
            (ADD, locked, self.add),
            (ADD_UV, uv_locked, (lambda: self.add(self.uv_root)) if wired else None),
            (ANCHOR, locked, self.recompile_and_diff),
            (BARE, None, self.bare_pip_compile),
            (BARE_UNION, None, self.bare_union),
            (BARE_UV, None, self.bare_uv),
            (WRAPPED_UV, self.wrapped_uv_folder, functools.partial(self.wrapped_uv, False)),
            (WRAPPED_UV_PAGES, self.wrapped_uv_folder, functools.partial(self.wrapped_uv, True)),
            (BARE_UV_LAYERS, None, self.bare_uv_layers),
        ]
        # Round by round, every operation once per round: a busy spell on a shared machine then
        # slows every contender alike instead of all the runs of one of them. The operations that
        # change nothing and take well under a second run SHORT_REPEAT times a round, so that one
        # spike of the machine's load does not make their median.
        times: dict[str, list[float]] = {label: [] for label, _, _ in operations}
        for _ in range(runs):
            for label, setup, operation in operations:
                if operation is None:
                    continue
                for _ in range(SHORT_REPEAT if label in SHORT else 1):
                    if setup is not None:
                        setup()
                    started = time.perf_counter()
                    operation()
                    times[label].append(time.perf_counter() - started)
            self.restore("locked")
            if wired:
                self.restore("locked", self.uv_root)
        for label, taken in times.items():
            print(f"  {label}: {', '.join(f'{t:.3f}' for t in taken) or 'not run'} s", file=sys.stderr)
        return [(label, statistics.median(taken) if taken else None) for label, taken in times.items()]


def uv_wired() -> bool:
    """Whether `[tool.deploy] resolver = "uv"` reaches the solve yet: lock/resolver.py builds the
    command, and the solve (solve.py, or a module it runs the resolver from) must call it with the
    setting; else its row says "not wired" instead of timing pip-compile twice."""
    solve_side = [path for path in (REPO / "deploy" / "lock").glob("*.py") if path.name != "resolver.py"]
    return "resolver" in config_module.Config.__dataclass_fields__ and any(
        "config.resolver" in path.read_text(encoding="utf-8") for path in solve_side)


def _constrain_by_lower_locks(folder: Path) -> None:
    """Each layer that includes another also takes its lock as constraints, as pip-tools' docs
    advise for layered requirements: `-r prod.in` gains `-c prod.txt`."""
    for path in folder.glob("*.in"):
        text = path.read_text(encoding="utf-8")
        lower = re.findall(r"^-r\s+(\S+)\.in\s*$", text, flags=re.MULTILINE)
        path.write_text(text + "".join(f"-c {name}.txt\n" for name in lower), encoding="utf-8")


def _print(results: list[tuple[str, float | None]], runs: int, title: str, *, small: bool) -> None:
    median = {label: seconds for label, seconds in results if seconds is not None}
    width = max(len(label) for label, _ in results)
    print(f"\n{title}; median of {runs} runs ({runs * SHORT_REPEAT} of the sub-second no-ops and bare uv); "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print(f"{'operation'.ljust(width)}  median")
    print(f"{'-' * width}  ---------")
    for label, seconds in results:
        shown = "not wired" if seconds is None else f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
        print(f"{label.ljust(width)}  {shown:>9}")
    # (label, numerator, denominator, target): "≥ 40" or "≤ 0.35", or "" where the issue sets none.
    ratios = [
        ("anchor / python -m deploy verify", ANCHOR, VERIFY, "≥ 40" if small else ""),
        ("anchor / nox -s verify", ANCHOR, NOX_VERIFY, ""),
        ("anchor / verify in process", ANCHOR, IN_PROCESS, ""),
        ("anchor / nox -s empty (ceiling)", ANCHOR, EMPTY, ""),
        ("anchor / no-op nox -s lock", ANCHOR, NO_OP, ""),
        ("full lock / bare per-layer pip-compile", FULL, BARE, "≤ 0.35"),
        ("bare union / bare per-layer (its floor)", BARE_UNION, BARE, ""),
        ("add / full lock", ADD, FULL, "≤ 1.2"),
        ("upgrade one / full lock", UPGRADE, FULL, ""),
        ("full lock (uv) / bare uv pip compile", FULL_UV, BARE_UV, "≤ 1.5"),
        ("no-op lock (uv) / bare uv pip compile", NO_OP_UV, BARE_UV, ""),
        ("floor: python + uv / bare uv", WRAPPED_UV, BARE_UV, ""),
        ("floor: python + uv + pages / bare uv", WRAPPED_UV_PAGES, BARE_UV, ""),
        ("full lock (uv) / floor with pages", FULL_UV, WRAPPED_UV_PAGES, ""),
        ("full lock (uv) / bare per-layer uv", FULL_UV, BARE_UV_LAYERS, ""),
        ("add (uv) / full lock (uv)", ADD_UV, FULL_UV, ""),
        ("upgrade one (uv) / full lock (uv)", UPGRADE_UV, FULL_UV, ""),
        ("bare per-layer pip-compile / bare uv", BARE, BARE_UV, ""),
    ]
    print("\nratios (this run)")
    for label, top, bottom, target in ratios:
        if top not in median or bottom not in median:
            print(f"  {label.ljust(40)} not wired")
            continue
        value = median[top] / median[bottom]
        verdict = ""
        if target:
            wanted = float(target.split()[1])
            met = value >= wanted if target.startswith("≥") else value <= wanted
            verdict = f"   target {target}: {'met' if met else 'MISSED'}"
        print(f"  {label.ljust(40)} {value:8.2f}x{verdict}")


if __name__ == "__main__":
    sys.exit(main())
