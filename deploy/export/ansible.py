"""What ansible-playbook needs to install a release pinship built: the inventory, the playbook
and the host script, as text; release/export.py writes them next to the release's files.

The playbook does what `invoke deploy` does, in Ansible's terms. Play 1 stages on every host:
the host script takes the claim and lists what the host's store lacks, `copy` sends only those
wheels, and the script stages them (each wheel checked against its sha256 on the host, installed
offline into a new release, the health check run), then a gate stops every host when more failed
than max-failures allows. Play 2 switches, in `serial` waves, with `max_fail_percentage`.

Everything the playbook holds that came from the project's settings is `!unsafe` (Ansible never
templates it) or is JSON-quoted; values that reach a host's shell go through Jinja's `quote`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from deploy.config import Environment, Host
from deploy.errors import ConfigError
from deploy.release.build import Build
from deploy.remote.bundle import AGENT_DIGEST, BOOT, PARTS

HOST_SCRIPT = "pinship-host.py"
KNOWN_HOSTS = "known_hosts"
# A path the inventory can carry as it is: INI quoting and Jinja braces never come into it.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./~+@-]+")


@dataclass(frozen=True)
class Rollout:
    """How the switch goes: Ansible's `serial` (empty: one wave) and how many hosts may fail."""

    waves: tuple[int, ...]  # hosts each wave switches, in order (Ansible's serial); empty: one wave
    max_failures: int  # hosts that may fail staging while the others still switch
    max_fail_percentage: float  # the same share of each wave of the switch (Ansible's rule: more fails it)

    @property
    def described(self) -> str:
        waves = "waves of " + ", ".join(str(w) for w in self.waves) + " hosts" if self.waves else "one wave"
        return f"{waves}; max-failures: {self.max_failures} ({self.max_fail_percentage:g}% of a wave)"


def group(env: Environment) -> str:
    """The inventory group of the environment's hosts (Ansible warns on '-' in group names)."""
    return env.name.replace("-", "_")


def aliases(hosts: tuple[Host, ...]) -> list[str]:
    """An inventory name per host: its name, with the port when two hosts share a name."""
    names = [re.sub(r"[^A-Za-z0-9_.-]", "_", h.hostname) for h in hosts]
    return [f"{name}_{h.port}" if names.count(name) > 1 else name for name, h in zip(names, hosts, strict=True)]


def inventory(env: Environment, identity: Path | None, command: str) -> str:
    """inventory.ini: the hosts, strict host key checking against the pinned keys copied in."""
    if identity is not None and not _PLAIN_PATH.fullmatch(str(identity)):
        raise ConfigError(f"identity {identity}: the inventory cannot carry this path (quotes, spaces or braces)",
                          fix="move the key to a path of letters, digits and ._-/~+@, and set identity to it")
    lines = [f"# Written by `{command}`; run that again rather than editing this file.",
             "# Host keys are checked against known_hosts next to this file (copied from known-hosts):",
             "# a host whose key is not there, or differs, is refused, as `invoke deploy` refuses it.",
             f"[{group(env)}]"]
    for alias, host in zip(aliases(env.hosts), env.hosts, strict=True):
        user = f" ansible_user={host.user}" if host.user else ""
        lines.append(f"{alias} ansible_host={host.hostname} ansible_port={host.port}{user}")
    args = ("-o StrictHostKeyChecking=yes -o 'UserKnownHostsFile=\"{{ inventory_dir }}/" + KNOWN_HOSTS + "\"' "
            "-o GlobalKnownHostsFile=/dev/null")
    lines += ["", f"[{group(env)}:vars]", "ansible_host_key_checking=true", f"ansible_ssh_common_args={args}",
              f"ansible_python_interpreter={env.python}"]
    if identity is not None:
        lines.append(f"ansible_ssh_private_key_file={identity}")
    return "\n".join(lines) + "\n"


def _unsafe(value: str | None) -> str:
    """A string Ansible takes as it is, never as a template."""
    return "null" if value is None else f"!unsafe {json.dumps(value)}"


def playbook(env: Environment, built: Build, rollout: Rollout, command: str) -> str:
    """playbook.yml: play 1 stages everywhere and gates, play 2 switches in waves."""
    release, hosts = built.release, len(env.hosts)
    wheels = ",\n".join(f"      {{sha256: {json.dumps(w.sha256)}, filename: {json.dumps(w.filename)}}}"
                         for w in built.wheels)

    def run(step: str) -> str:
        """The task body that runs one step of pinship-host.py on the host."""
        return ("      ansible.builtin.script:\n"
                f"        cmd: \"{HOST_SCRIPT} {step} "
                "{{ pinship_user | quote }} {{ pinship_machine | quote }}\"\n"
                "        executable: \"{{ pinship_python }} -I -S\"\n")
    serial = f"  serial: {json.dumps(list(rollout.waves))}\n" if rollout.waves else ""
    hook = "" if not getattr(env, "run_once", None) else f"""
    - name: "run-once on one host, in release {release}, before any host switches (a failure stops them all)"
{run("run-once")}      when: ansible_play_hosts | map('extract', hostvars, ['pinship_state', 'live']) | reject | list
            | length > 0
      run_once: true
      any_errors_fatal: true
"""
    return f"""\
# Written by `{command}`; run that again rather than editing this file.
# Installs pinship release {release} ({len(built.wheels)} wheels, wheels/<sha256>/ next to this file)
# on the hosts of `{env.name}` with the checks `invoke deploy` makes, through the same host agent
# (pinship-host.py): each wheel checked against its sha256 on the host, installed offline into a
# new release, the health check run there, `current` switched by rename, the lock held meanwhile.
# Play 1 stages on every host; if more than {rollout.max_failures} of the {hosts} hosts fail it (max-failures), no host
# switches. Play 2 switches ({rollout.described}): a wave with too many failures
# stops the rollout, and the waves before it keep the release (`invoke rollback --env {env.name}` returns them).
# Run: ansible-playbook -i inventory.ini playbook.yml; then check: invoke status --env {env.name}

- name: "pinship: stage release {release} on every host of {env.name}"
  hosts: {group(env)}
  gather_facts: false
  vars: &pinship
    pinship_release: "{release}"
    pinship_path: {_unsafe(env.path)}
    pinship_python: {_unsafe(env.python)}
    pinship_user: "{{{{ lookup('ansible.builtin.env', 'USER') | default('unknown', true) }}}}"
    pinship_machine: "{{{{ lookup('ansible.builtin.pipe', 'uname -n') }}}}"
    pinship_wheels: [
{wheels}
    ]
  tasks:
    - name: take the lock, check the host's store, list the wheels it lacks
{run("probe")}      register: pinship_probe
      changed_when: false

    - name: read what the host's store lacks
      ansible.builtin.set_fact:
        pinship_state: "{{{{ pinship_probe.stdout_lines | last | from_json }}}}"

    - name: send the wheels the host's store lacks (checked against their sha256 on the host)
      ansible.builtin.copy:
        src: "wheels/{{{{ item.sha256 }}}}/{{{{ item.filename }}}}"
        dest: "{{{{ pinship_path }}}}/wheels/.incoming/{{{{ item.sha256 }}}}"
        mode: "0644"
      loop: "{{{{ pinship_wheels }}}}"
      loop_control:
        label: "{{{{ item.filename }}}}"
      when: item.sha256 in pinship_state.missing

    - name: stage release {release} (store check, venv, offline install, health check)
{run("stage")}      when: not pinship_state.live

    - name: "gate: no host switches if more than {rollout.max_failures} of {hosts} failed staging (max-failures)"
      ansible.builtin.fail:
        msg: >-
          {{{{ (ansible_play_hosts_all | length) - (ansible_play_hosts | length) }}}} of {hosts} hosts
          failed staging, more than max-failures = {rollout.max_failures}: no host switches
          ({{{{ ansible_play_hosts_all | difference(ansible_play_hosts) | join(', ') }}}})
      when: (ansible_play_hosts_all | length) - (ansible_play_hosts | length) > {rollout.max_failures}
      run_once: true
      any_errors_fatal: true
{hook}
- name: "pinship: switch the hosts of {env.name} to release {release}"
  hosts: {group(env)}
  gather_facts: false
{serial}  max_fail_percentage: {rollout.max_fail_percentage:g}
  vars: *pinship
  tasks:
    - name: switch `current` to release {release} (restart; a failed restart switches back)
{run("switch")}      when: not pinship_state.live
"""


def host_script(env: Environment, built: Build) -> str:
    """pinship-host.py: the host side (onhost.py), the agent and the release it installs."""
    source = resources.files("deploy.export").joinpath("onhost.py").read_text(encoding="utf-8")
    bundle = {"boot": BOOT, "parts": PARTS, "digest": AGENT_DIGEST, "path": env.path, "release": built.release,
              "environment": env.name, "manifest": built.manifest, "lock": built.lock_text,
              "healthcheck": env.healthcheck, "restart": env.restart, "keep": env.keep_releases,
              "timeout": env.command_timeout, "run_once": getattr(env, "run_once", None),
              "post_switch": getattr(env, "post_switch", None), "hook_timeout": getattr(env, "hook_timeout", None)}
    return (f"#!/usr/bin/env python3\n# Written by pinship for release {built.release}: the playbook runs it "
            f"on each host.\n{source}\n\nBUNDLE = {json.dumps(json.dumps(bundle, sort_keys=True))}\n\n"
            "if __name__ == \"__main__\":\n    sys.exit(main(sys.argv[1:], json.loads(BUNDLE)))\n")
