"""Ansible on the benchmark's hosts: the playbook teams write today, and the one pinship exports.

Both run through ansible-playbook from this repo's dev lock, as a user runs it: an inventory of
the sshd hosts (each 127.0.0.x and port), the harness's key, the pinned known_hosts with strict
checking, forks = the host count, pipelining on, nothing of this machine's Ansible configuration.
Every run starts from empty hosts, as a first deploy does.

- venv + pip: per host a new release folder, `ansible.builtin.pip` with `virtualenv` installing the
  deploy layer's prod.txt (--require-hashes, from the benchmark's index on 127.0.0.1) and then the
  app's wheel, and `current` linked to it; pip on the hosts reads no config file
  (PIP_CONFIG_FILE=/dev/null), as the anchor's does.
- exported: `invoke export --to ansible` (timed apart, it builds the release on this machine),
  then its playbook; afterwards `invoke status` must find every host on that release, no drift.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.deployproject import APP, INVOKE, DeployProject, wipe
from tests.support.sshd import SshCluster, SshHost

PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))

# What teams write: a folder per release, a venv made and filled by the pip module, a link.
VENV_PIP = """\
- name: deploy {{ release }} with a venv and pip, as teams do without pinship
  hosts: app
  gather_facts: false
  environment:
    PIP_CONFIG_FILE: /dev/null
  vars:
    release_dir: "{{ root }}/releases/{{ release }}"
  tasks:
    - name: make the release folder
      ansible.builtin.file:
        path: "{{ release_dir }}"
        state: directory
        mode: "0755"

    - name: send the locked requirements
      ansible.builtin.copy:
        src: "{{ requirements }}"
        dest: "{{ release_dir }}/requirements.txt"
        mode: "0644"

    - name: send the app's wheel
      ansible.builtin.copy:
        src: "{{ app_wheel }}"
        dest: "{{ release_dir }}/{{ app_wheel | basename }}"
        mode: "0644"

    - name: install the locked requirements into a new venv
      ansible.builtin.pip:
        requirements: "{{ release_dir }}/requirements.txt"
        virtualenv: "{{ release_dir }}/venv"
        virtualenv_command: python3 -m venv
        extra_args: "--require-hashes --index-url {{ index_url }}"

    - name: install the app
      ansible.builtin.pip:
        name: "{{ release_dir }}/{{ app_wheel | basename }}"
        virtualenv: "{{ release_dir }}/venv"
        extra_args: --no-deps

    - name: switch current to the release
      ansible.builtin.file:
        src: "{{ release_dir }}"
        dest: "{{ root }}/current"
        state: link
        force: true
"""


class Ansible:
    """ansible-playbook against the first `count` hosts of the cluster, from empty hosts."""

    def __init__(self, project: DeployProject, cluster: SshCluster, work: Path) -> None:
        self.project, self.cluster, self.work = project, cluster, work
        work.mkdir(parents=True, exist_ok=True)
        self.runs = 0

    def env(self, forks: int) -> dict[str, str]:
        config = self.work / "ansible.cfg"
        config.write_text(f"[defaults]\nforks = {forks}\nhost_key_checking = True\nretry_files_enabled = False\n"
                          "[ssh_connection]\npipelining = True\n")
        env = {**self.project.env, "HOME": os.environ.get("HOME", str(self.work)), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_CONFIG": str(config), "ANSIBLE_LOCAL_TEMP": str(self.work / "tmp"),
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.work / "cp")}
        env.pop("SSH_AUTH_SOCK", None)
        return env

    def fresh(self, hosts: list[SshHost]) -> None:
        """Empty hosts, with no agent of a keeper left on them."""
        self.invoke("disconnect", "--env", f"h{len(hosts)}")
        for host in hosts:
            wipe(host, self.cluster.deploy_path)

    def invoke(self, *args: str) -> str:
        """An invoke task in the project; its output, or the benchmark stops with it."""
        done = subprocess.run([INVOKE, *args], cwd=self.project.root, env=self.project.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"invoke {' '.join(args)} failed:\n{done.stdout}")
        return done.stdout

    def playbook(self, inventory: Path, playbook: Path, forks: int, *extra: str) -> float:
        started = time.perf_counter()
        done = subprocess.run([PLAYBOOK, "-i", str(inventory), str(playbook), *extra], cwd=self.project.root,
                              env=self.env(forks), capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"ansible-playbook {playbook} failed:\n{done.stdout[-6000:]}{done.stderr[-2000:]}")
        return seconds

    def venv_pip(self, count: int, requirements: Path, app_wheel: Path, index_url: str) -> float:
        """The venv + pip playbook on `count` empty hosts; checks each host serves the app from it."""
        hosts = self.cluster.hosts[:count]
        self.fresh(hosts)
        self.runs += 1
        inventory = self.work / f"venv-pip-{count}.ini"
        lines = ["[app]", *(f"h{n} ansible_host={h.address} ansible_port={h.port}" for n, h in enumerate(hosts)),
                 "", "[app:vars]", "ansible_user=root", f"ansible_ssh_private_key_file={self.cluster.client_key}",
                 "ansible_python_interpreter=python3",
                 "ansible_ssh_common_args=-o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null "
                 f"-o UserKnownHostsFile={self.cluster.known_hosts}"]
        inventory.write_text("\n".join(lines) + "\n")
        playbook = self.work / "venv-pip.yml"
        playbook.write_text(VENV_PIP)
        variables = {"root": self.cluster.deploy_path, "release": f"r{self.runs}", "requirements": str(requirements),
                     "app_wheel": str(app_wheel), "index_url": index_url}
        seconds = self.playbook(inventory, playbook, count, "-e", json.dumps(variables))
        for host in hosts:
            check = host.run(f"{self.cluster.deploy_path}/current/venv/bin/python -c 'import {APP}, framework'")
            if check.returncode != 0:
                raise SystemExit(f"venv + pip playbook: {host.address} does not serve the app: {check.stderr}")
        return seconds

    def exported(self, count: int) -> tuple[float, float]:
        """`invoke export` then its playbook on `count` empty hosts: (export seconds, playbook
        seconds); then `invoke status` must find every host on the exported release, no drift."""
        hosts = self.cluster.hosts[:count]
        self.fresh(hosts)
        out = self.work / f"export-{count}"
        started = time.perf_counter()
        self.invoke("export", "--env", f"h{count}", "--to", "ansible", "--out", str(out))
        exported = time.perf_counter() - started
        release = json.loads(next((out / "releases").glob("*/manifest.json")).read_text())["release"]
        seconds = self.playbook(out / "inventory.ini", out / "playbook.yml", count)
        status = self.invoke("status", "--env", f"h{count}")
        if status.count(release) != count or "problem" in status:
            raise SystemExit(f"after the exported playbook, invoke status does not find every host on {release}:\n"
                             f"{status}")
        return exported, seconds
