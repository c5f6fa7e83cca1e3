"""How long deploys take on 1 to 250 real sshd hosts, next to what teams do today.

    .venv/bin/python benchmarks/deploy.py [--runs N] [--hosts 1,10,30,100,250] [--ansible 30]

Needs root and OpenSSH's sshd (the same harness as the tests: one sshd per host on 127.0.0.x,
each with its own view of the deploy path). It builds a small app whose deploy layer has 11
packages (three of about 1 MB, one sdist-only) served by a local index on 127.0.0.1, then times:

- first deploy: hosts empty, the local build cache empty (so it includes fetching and building);
- the anchor, per host in turn: `python -m venv` + `pip install --require-hashes -r prod.txt` from
  the index + the app's wheel, over the same SSH connections a person would use;
- an unchanged redeploy, a new app version, and a rollback, each run right after the one before:
  with the connections and agents a keeper kept from it (keep-alive, on by default), and the new
  version once more with keep-alive 0, which is what a run pays when the last was long ago.

A first deploy is measured with no keeper running (it forks one, and pays for that).

At the --ansible host counts (default 30), Ansible on the same hosts and lock (playbooks.py): the
venv + pip playbook teams write today, and the playbook `invoke export --to ansible` writes,
each from empty hosts; after the exported one, `invoke status` must find every host on its release.

From 100 hosts on (a fleet), each count also gets an unchanged redeploy and a new app version,
and what one control node holds per host: open files of the deploying process (its peak, sampled)
and of the keeper, and the keeper's memory (VmRSS with every host's connection and agent kept;
per host: its growth from the smallest fleet measured, over the hosts added). Past 253 hosts the
harness goes on at 127.0.1.2.

It prints medians of N runs, ratios from this one run, bytes sent per host and peak memory: the
deploying process's (its max RSS, from wait4) and the keeper's (VmHWM, read before it is stopped).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paramiko

from benchmarks.playbooks import Ansible
from tests.deployproject import INVOKE, DeployProject, environment_toml, make_project, wipe
from tests.support.pkgindex import PackageIndex
from tests.support.sshd import SshCluster, require_sshd, unique_deploy_path

# name -> (requirements, sdist only, payload bytes)
PACKAGES: dict[str, tuple[list[str], bool, int]] = {
    "alpha": (["beta>=1"], False, 0), "beta": ([], False, 0), "gamma": ([], True, 0), "delta": ([], False, 0),
    "framework": (["alpha", "routing", "templates"], False, 1_000_000), "routing": ([], False, 200_000),
    "templates": (["markup"], False, 300_000), "markup": ([], False, 0), "dbdriver": ([], False, 1_000_000),
    "orm": (["dbdriver"], False, 800_000), "server": (["framework"], False, 100_000), "metrics": ([], False, 50_000),
}
LAYERS = {
    "base.in": "framework\norm\n",
    "prod.in": "-r base.in\nserver\nmetrics\ngamma\n",
    "test.in": "-r prod.in\ndelta\n",
}

VENV_PIP = "Ansible: venv + pip playbook"
EXPORTED = "Ansible: exported playbook"


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    peak_kb: int = 0
    sent: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions per case (default 3)")
    parser.add_argument("--hosts", default="1,10,30,100,250", help="host counts (default 1,10,30,100,250)")
    parser.add_argument("--ansible", default="30", help="host counts (of --hosts) to run Ansible's venv + pip "
                        "playbook and the exported one at (default 30; '' for none)")
    args = parser.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    ansible_counts = [int(n) for n in args.ansible.split(",") if n.strip()]
    reason = require_sshd()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    with tempfile.TemporaryDirectory(prefix="pinship-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with PackageIndex(tmp / "index") as index, \
                SshCluster(tmp / "sshd", max(counts), deploy_path=unique_deploy_path()) as cluster:
            _publish(index)
            project = make_project(tmp / "app", index.url)
            for name, text in LAYERS.items():
                (project.root / "requirements" / name).write_text(text, encoding="utf-8")
            _run([sys.executable, "-m", "deploy", "lock"], project)
            cluster.write_known_hosts(project.root / "known_hosts")
            project.configure("".join(
                environment_toml(f"h{n}", cluster, cluster.hosts[:n], parallel=10, keep_alive=None) for n in counts))
            bench = Bench(project, cluster, index, tmp, counts, ansible_counts)
            try:
                results = bench.measure(counts, args.runs)
                keeper_kb = _keeper_peak_kb()
            finally:
                bench.disconnect()
    _print(results, counts, args.runs)
    _print_fleet(results, bench.fleet)
    if keeper_kb:
        print(f"  keeper process peak RSS: {keeper_kb / 1024:.0f} MB (forked from a run: most pages shared with it)")
    return 0


def _keeper_peak_kb() -> int:
    """The largest VmHWM of the keeper processes running now."""
    return max((_status_kb(proc, "VmHWM") for proc in _keepers()), default=0)


def _status_kb(proc: Path, field: str) -> int:
    try:
        found = re.search(rf"{field}:\s+(\d+)", (proc / "status").read_text())
    except OSError:
        return 0
    return int(found.group(1)) if found else 0


@dataclass
class Fleet:
    """What one control node holds for `hosts` hosts, with their connections kept."""

    hosts: int
    run_files: int  # the deploying process's peak open files in an unchanged redeploy
    keeper_files: int  # the keeper's, meanwhile
    keeper_kb: int  # VmRSS


def _publish(index: PackageIndex) -> None:
    for name, (requires, sdist_only, size) in PACKAGES.items():
        # Hex of random bytes: it compresses only 2:1, like real code and data, not like zeros.
        payload = {f"{name}/data.txt": secrets.token_hex(size // 2)} if size else None
        index.add(name, "1.0", requires, sdist_only=sdist_only, files=payload)


def _keepers() -> list[Path]:
    """The /proc folders of the keeper processes running now (they name themselves pinship-keeper)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "pinship-keeper":
                found.append(proc)
        except OSError:
            continue
    return found


def _open_files(proc: Path) -> int:
    try:
        return len(os.listdir(proc / "fd"))
    except OSError:
        return 0


class _FileSampler(threading.Thread):
    """The most files a process, and the keepers together, held open at once while it ran
    (sampled every 20 ms; the keepers are looked for every half second)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = Path(f"/proc/{pid}")
        self.peak = self.keeper_peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        keepers: list[Path] = []
        for tick in range(1 << 30):
            if self.done.wait(0.02):
                return
            if tick % 25 == 0:
                keepers = _keepers()
            self.peak = max(self.peak, _open_files(self.proc))
            self.keeper_peak = max(self.keeper_peak, sum(_open_files(proc) for proc in keepers))


LAST_PEAK_FILES = [0, 0]  # of the last command _run ran, and of the keepers meanwhile


def _run(command: list[str], project: DeployProject) -> tuple[float, int, str]:
    """Run a command in the project; return wall seconds, its peak RSS in kB, and its output."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=project.root, env=project.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    sampler = _FileSampler(process.pid)
    sampler.start()
    output = process.stdout.read()
    sampler.done.set()
    sampler.join()
    LAST_PEAK_FILES[:] = [sampler.peak, sampler.keeper_peak]
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output}")
    return seconds, usage.ru_maxrss, output


class Bench:
    def __init__(self, project: DeployProject, cluster: SshCluster, index: PackageIndex, tmp: Path,
                 counts: list[int], ansible_counts: list[int]) -> None:
        self.project = project
        self.counts = counts
        self.ansible_counts = ansible_counts
        self.cluster = cluster
        self.index = index
        self.tmp = tmp
        self.version = 1
        self.fleet: list[Fleet] = []

    def deploy(self, count: int, action: str, *args: str) -> tuple[float, int, str]:
        return _run([INVOKE, action, "--env", f"h{count}", *args], self.project)

    def first_deploy(self, count: int) -> tuple[float, int, str]:
        """Cold in every way: empty hosts, no local build cache, no connections kept by a run before."""
        self.disconnect()
        for host in self.cluster.hosts[:count]:
            wipe(host, self.cluster.deploy_path)
        shutil.rmtree(self.project.root / ".deploy", ignore_errors=True)
        return self.deploy(count, "deploy")

    def new_version(self, count: int, *args: str) -> tuple[float, int, str]:
        self.version += 1
        self.project.set_version(f"1.{self.version}")
        return self.deploy(count, "deploy", *args)

    def disconnect(self) -> None:
        for count in self.counts:
            _run([INVOKE, "disconnect", "--env", f"h{count}"], self.project)

    def anchor(self, count: int) -> float:
        """What a team does without the tool: each host in turn makes a venv and installs from the index."""
        app = self._app_wheel()
        lock = self.project.root / "requirements" / "prod.txt"
        started = time.perf_counter()
        for host in self.cluster.hosts[:count]:
            client = paramiko.SSHClient()
            client.load_host_keys(str(self.cluster.known_hosts))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.connect(host.address, host.port, username="root", key_filename=str(self.cluster.client_key),
                           allow_agent=False, look_for_keys=False)
            work = f"/tmp/anchor-{host.address}"
            client.exec_command(f"rm -rf {work} && mkdir -p {work}")[1].channel.recv_exit_status()
            with client.open_sftp() as sftp:
                sftp.put(str(lock), f"{work}/prod.txt")
                sftp.put(str(app), f"{work}/{app.name}")
            script = (f"cd {work} && export PIP_CONFIG_FILE=/dev/null && python3 -m venv venv && "
                      f"venv/bin/pip install -q --require-hashes -r prod.txt --index-url {shlex.quote(self.index.url)}"
                      f" && venv/bin/pip install -q --no-deps {shlex.quote(app.name)}")
            _, stdout, _ = client.exec_command(script)
            if stdout.channel.recv_exit_status() != 0:
                raise SystemExit(f"anchor failed on {host.address}: {stdout.read().decode()}")
            client.close()
        return time.perf_counter() - started

    def ansible(self, count: int, runs: int) -> list[tuple[str, float]]:
        """Ansible on the same hosts and lock: the venv + pip playbook, then pinship's exported one."""
        runner = Ansible(self.project, self.cluster, self.tmp / "ansible")
        app, lock = self._app_wheel(), self.project.root / "requirements" / "prod.txt"
        timed = [(f"{VENV_PIP}, {count} hosts", runner.venv_pip(count, lock, app, self.index.url)) for _ in range(runs)]
        for _ in range(runs):
            exported, seconds = runner.exported(count)
            timed += [(f"invoke export --to ansible, {count} hosts", exported),
                      (f"{EXPORTED}, {count} hosts", seconds)]
        return timed

    def _app_wheel(self) -> Path:
        out = self.tmp / "app-wheel"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(self.project.root)]
        subprocess.run(command, env=self.project.env, check=True)
        return next(out.glob("*.whl"))

    def measure(self, counts: list[int], runs: int) -> dict[str, Timing]:
        results: dict[str, Timing] = {}

        def record(label: str, outcome: tuple[float, int, str]) -> None:
            timing = results.setdefault(label, Timing())
            timing.seconds.append(outcome[0])
            timing.peak_kb = max(timing.peak_kb, outcome[1])
            timing.sent = _sent_per_host(outcome[2]) or timing.sent
            print(f"  {label}: {outcome[0]:.2f} s", file=sys.stderr)

        for count in counts:
            for _ in range(runs):
                record(f"first deploy, {count} hosts", self.first_deploy(count))
                if count <= 10:
                    seconds = self.anchor(count)
                    label = f"anchor: venv + pip install per host, {count} hosts"
                    results.setdefault(label, Timing()).seconds.append(seconds)
                    print(f"  anchor {count}: {seconds:.2f} s", file=sys.stderr)
            if count in self.ansible_counts:
                for label, seconds in self.ansible(count, runs):
                    record(label, (seconds, 0, ""))
            if count >= 100:
                for _ in range(runs):
                    record(f"unchanged redeploy, {count} hosts", self.deploy(count, "deploy"))
                self.fleet.append(self._held(count))
                for _ in range(runs):
                    record(f"new app version, {count} hosts", self.new_version(count))
            if count == 10:
                for _ in range(runs):
                    record("unchanged redeploy, 10 hosts", self.deploy(10, "deploy"))
                self.fleet.append(self._held(10))  # the baseline the fleet's growth per host is taken from
                for _ in range(runs):
                    record("new app version, 10 hosts", self.new_version(10))
                for _ in range(runs):  # what a run more than keep-alive seconds after the last one pays
                    record("new app version, 10 hosts, keep-alive 0", self.new_version(10, "--keep-alive", "0"))
                for _ in range(runs):
                    record("rollback, 10 hosts", self.deploy(10, "rollback"))
        return results


    def _held(self, count: int) -> Fleet:
        """Open files during an unchanged redeploy of `count` hosts, and the keeper's memory right
        after it (it still holds every host's connection and agent; it is the only keeper running)."""
        run_files, keeper_files = LAST_PEAK_FILES
        return Fleet(count, run_files, keeper_files, sum(_status_kb(proc, "VmRSS") for proc in _keepers()))


def _sent_per_host(output: str) -> str:
    sizes = set(re.findall(r"(?m)^\S+\s+\S+\s+\S+(?: [^\d\s]\S*)*\s+\S+\s+[\d.]+\s+(0|[\d.]+ [kM]B)\s*$", output))
    return "/".join(sorted(sizes))


def _print(results: dict[str, Timing], counts: list[int], runs: int) -> None:
    width = max(len(label) for label in results)
    print(f"\n{len(PACKAGES) - 1} packages in the deploy layer + the app; median of {runs} runs; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, sshd hosts on loopback\n")
    print(f"{'case'.ljust(width)}  {'median':>8}  {'sent per host':>14}  {'peak RSS':>9}")
    for label, timing in results.items():
        memory = f"{timing.peak_kb / 1024:.0f} MB" if timing.peak_kb else "-"
        print(f"{label.ljust(width)}  {timing.median:7.2f}s  {timing.sent or '-':>14}  {memory:>9}")
    print("\nratios (this run)")
    for count in counts:
        anchor = results.get(f"anchor: venv + pip install per host, {count} hosts")
        if anchor:
            ours = results[f"first deploy, {count} hosts"].median
            print(f"  anchor / first deploy, {count} hosts: {anchor.median / ours:6.2f}x")
    for count in counts:
        cold = results[f"first deploy, {count} hosts"].median
        ansible, exported = results.get(f"{VENV_PIP}, {count} hosts"), results.get(f"{EXPORTED}, {count} hosts")
        if ansible:
            ratio = ansible.median / cold
            target = f"  (target ≥ 10: {'met' if ratio >= 10 else 'MISSED'})" if count == 30 else ""
            print(f"  Ansible venv+pip playbook / first deploy, {count} hosts: {ratio:6.2f}x{target}")
        if exported:
            print(f"  exported playbook / first deploy, {count} hosts: {exported.median / cold:6.2f}x")
        if ansible and exported:
            print(f"  Ansible venv+pip playbook / exported playbook, {count} hosts: "
                  f"{ansible.median / exported.median:6.2f}x")
    for label in ("new app version, 10 hosts", "new app version, 10 hosts, keep-alive 0"):
        if label in results and "first deploy, 10 hosts" in results:
            share = results[label].median / results["first deploy, 10 hosts"].median
            print(f"  {label} / first deploy: {share:6.0%}")
    for count in counts:
        first, unchanged = results[f"first deploy, {count} hosts"], results.get(f"unchanged redeploy, {count} hosts")
        if unchanged and count >= 100:
            print(f"  unchanged redeploy / first deploy, {count} hosts: {unchanged.median / first.median:6.0%}")
    firsts = [(n, results[f"first deploy, {n} hosts"].median) for n in counts]
    if len(firsts) > 1:
        (n0, t0), (n1, t1) = firsts[0], firsts[-1]
        print(f"  first deploy growth {n0} → {n1} hosts: {t1 / t0:.2f}x the time for {n1 / n0:g}x the hosts")


def _print_fleet(results: dict[str, Timing], fleet: list[Fleet]) -> None:
    """One control node at scale: times, and what it holds per host."""
    if not fleet:
        return
    smallest = fleet[0]
    print("\none control node, connections kept (keep-alive on); per host: total / hosts")
    print(f"{'hosts':>5}  {'first':>7}  {'unchanged':>9}  {'new ver.':>8}  {'run fds':>13}  {'keeper fds':>13}  "
          f"{'keeper RSS':>17}  {'growth/host':>11}")
    for held in fleet:
        n = held.hosts
        cases = ("first deploy", "unchanged redeploy", "new app version")
        times = [results.get(f"{case}, {n} hosts") for case in cases]
        shown = [f"{t.median:.2f}s" if t else "-" for t in times]
        growth = (f"{(held.keeper_kb - smallest.keeper_kb) / (n - smallest.hosts) / 1024:.2f} MB"
                  if n > smallest.hosts else "-")
        print(f"{n:>5}  {shown[0]:>7}  {shown[1]:>9}  {shown[2]:>8}  "
              f"{held.run_files:>5} ({held.run_files / n:.2f})  {held.keeper_files:>5} ({held.keeper_files / n:.2f})  "
              f"{held.keeper_kb / 1024:>6.0f} MB ({held.keeper_kb / 1024 / n:.2f} MB)  {growth:>11}")


if __name__ == "__main__":
    sys.exit(main())
