"""How long a lock takes against a real package index, next to what pip-tools and uv users run.

    .venv/bin/python benchmarks/real_index.py --index https://pypi.org/simple/ [--runs 3] [--only uv]

Opt-in, since it reads the index it is given (benchmarks/lock.py measures the resolvers' own work
on a local index; this measures what a team waits for, with the index's real pages: PyPI's list
every file of every release, megabytes for boto3 or numpy). The project is a Django web app's four
layers (`APP` below: 65 packages on PyPI as of December 2026). pip is isolated from this machine's
configuration but for its certificate (PIP_CERT, which a lock keeps too); pip's, pip-tools' and
uv's caches are this run's own, warmed by one untimed round, so every timed run revalidates pages
as a developer's second lock of the day does. Each round runs every contender once, in turn (a
slow spell of the network then slows all of them), and the table gives the medians and the ratios
taken from this one run.

`--only uv` times the uv contenders alone (seconds a round); `--only pip-tools` the others (minutes:
one pip-compile per layer takes two and a half on PyPI).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.lock.freshness import COMPILE_OPTIONS
from deploy.lock.lockfile import parse
from tests.support.pipenv import isolated_pip_env

REPO = Path(__file__).resolve().parents[1]
APP = {
    "base.in": "django\ncelery[redis]\npsycopg[binary]\nrequests\nboto3\npydantic\n",
    "prod.in": "-r base.in\ngunicorn\nsentry-sdk\n",
    "test.in": "-r prod.in\npytest\npytest-django\nfactory-boy\ncoverage\n",
    "dev.in": "-r test.in\nruff\nmypy\nipython\nnumpy\n",
}
ORDER = ("base", "prod", "test", "dev")
PYPROJECT = '[project]\nname = "app"\nversion = "1.0"\n\n[tool.deploy]\nrequirements = "requirements"\n'

FULL = "python -m deploy lock, from scratch"
FULL_UV = 'python -m deploy lock, from scratch, resolver = "uv"'
LAYERS = "bare pip-compile of each layer, bottom-up with -c"
UNION = "bare pip-compile of the union"
UV_LAYERS = "bare uv pip compile of each layer, bottom-up with -c"
UV_UNION = "bare uv pip compile of the union"
ONLY = {"uv": (FULL_UV, UV_LAYERS, UV_UNION), "pip-tools": (FULL, LAYERS, UNION)}
RATIOS = [
    ("full lock / bare per-layer pip-compile", FULL, LAYERS),
    ("full lock / bare union pip-compile", FULL, UNION),
    ("full lock (uv) / bare per-layer uv", FULL_UV, UV_LAYERS),
    ("full lock (uv) / bare union uv", FULL_UV, UV_UNION),
    ("full lock / full lock (uv)", FULL, FULL_UV),
]


class Contenders:
    def __init__(self, tmp: Path, index: str) -> None:
        self.tmp = tmp
        self.index = index
        self.env = isolated_pip_env(index, tmp / "cache")
        if os.environ.get("PIP_CERT"):
            self.env["PIP_CERT"] = os.environ["PIP_CERT"]
        self.env["UV_CACHE_DIR"] = str(tmp / "cache" / "uv")
        self.env["PYTHONPATH"] = str(REPO)  # the code beside this script, as benchmarks/lock.py runs it
        self.uv = str(Path(sys.executable).parent / "uv")
        for name, resolver in (("project", ""), ("project-uv", 'resolver = "uv"\n')):
            (tmp / name / "requirements").mkdir(parents=True)
            (tmp / name / "pyproject.toml").write_text(PYPROJECT + resolver, encoding="utf-8")
            for file, text in APP.items():
                (tmp / name / "requirements" / file).write_text(text, encoding="utf-8")

    def run(self, command: list[str], cwd: Path) -> None:
        done = subprocess.run(command, cwd=cwd, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")

    def lock(self, name: str) -> None:
        folder = self.tmp / name / "requirements"
        for path in [*folder.glob("*.txt"), *folder.glob("pylock.*.toml")]:
            path.unlink()
        self.run([sys.executable, "-m", "deploy", "lock"], self.tmp / name)

    def scratch(self, name: str, *, constrained: bool) -> Path:
        folder = self.tmp / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for file, text in APP.items():
            lower = {"prod.in": "base", "test.in": "prod", "dev.in": "test"}.get(file)
            # As pip-tools' docs advise for layered files: each layer also takes the lock below it.
            (folder / file).write_text(text + (f"-c {lower}.txt\n" if constrained and lower else ""), encoding="utf-8")
        (folder / "layers.union").write_text("".join(f"-r {layer}.in\n" for layer in ORDER), encoding="utf-8")
        return folder

    def pip_compile(self, output: str, source: str) -> list[str]:
        return [sys.executable, "-m", "piptools", "compile", *COMPILE_OPTIONS, "--quiet", "-o", output, source]

    def uv_compile(self, output: str, source: str) -> list[str]:
        return [self.uv, "pip", "compile", "--no-config", "--generate-hashes", "--python", sys.executable,
                "--default-index", self.index, "--quiet", "-o", output, source]

    def operations(self) -> dict[str, Callable[[], None]]:
        def layers(compile_: Callable[[str, str], list[str]], name: str) -> Callable[[], None]:
            def run() -> None:
                folder = self.scratch(name, constrained=True)
                for layer in ORDER:
                    self.run(compile_(f"{layer}.txt", f"{layer}.in"), folder)
            return run

        def union(compile_: Callable[[str, str], list[str]], name: str) -> Callable[[], None]:
            return lambda: self.run(compile_("all.txt", "layers.union"), self.scratch(name, constrained=False))

        return {
            FULL: lambda: self.lock("project"),
            FULL_UV: lambda: self.lock("project-uv"),
            LAYERS: layers(self.pip_compile, "bare-layers"),
            UNION: union(self.pip_compile, "bare-union"),
            UV_LAYERS: layers(self.uv_compile, "uv-layers"),
            UV_UNION: union(self.uv_compile, "uv-union"),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="the index to lock against, e.g. https://pypi.org/simple/")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds (default 3), after one untimed")
    parser.add_argument("--only", choices=sorted(ONLY), help="time one resolver's contenders alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pinship-real-index-") as tmp:
        contenders = Contenders(Path(tmp), args.index)
        operations = contenders.operations()
        chosen = [label for label in operations if args.only is None or label in ONLY[args.only]]
        times: dict[str, list[float]] = {label: [] for label in chosen}
        for number in range(args.runs + 1):
            for label in chosen:
                started = time.perf_counter()
                operations[label]()
                if number:  # the first round warms the caches
                    times[label].append(time.perf_counter() - started)
        locked = [Path(tmp) / name / "requirements" / "dev.txt" for name in ("project", "project-uv")]
        pinned = next((len(parse(path).pins) for path in locked if path.is_file()), None)
    _print(times, args, pinned)
    return 0


def _print(times: dict[str, list[float]], args: argparse.Namespace, pinned: int | None) -> None:
    median = {label: statistics.median(taken) for label, taken in times.items()}
    width = max(len(label) for label in median)
    size = f", {pinned} packages in the top layer" if pinned else ""
    print(f"\n{args.index}: 4 layers{size}; median of {args.runs} runs after a warm-up; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print(f"{'operation'.ljust(width)}  median    runs")
    print(f"{'-' * width}  --------  ----")
    for label, seconds in median.items():
        print(f"{label.ljust(width)}  {seconds:7.2f} s  {', '.join(f'{t:.2f}' for t in times[label])}")
    print("\nratios (this run)")
    for label, top, bottom in RATIOS:
        if top in median and bottom in median:
            print(f"  {label.ljust(40)} {median[top] / median[bottom]:6.2f}x")


if __name__ == "__main__":
    sys.exit(main())
