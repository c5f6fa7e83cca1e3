"""What ansible-playbook needs to install a release pinship built: the inventory, the playbook
and the host script, as text; release/export.py writes them next to the release's files.

The playbook does what `invoke deploy` does, in Ansible's terms. Play 1 stages on every host:
the host script takes the claim and lists what the host's store lacks; the wheels any host lacks
and the host script are packed once on the control machine into one zip Python runs (a zipapp),
which a host that lacks any runs as the script of its stage step: the transfer costs no task of
its own (a `copy` per wheel per host was most of a run, and even one `copy` per host costs two
module runs more than a `script`). The stage step puts the release's wheels it carries into the
store's incoming folder and stages them (each checked against its sha256 on the host, installed
offline into a new release, the health check run), then a gate stops every host when more failed
than max-failures allows. Play 2 switches in `serial` waves, each gated by the failures so far;
play 3 reports them and, past max-failures, switches back what the run switched (on-wave-failure).

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
from deploy.remote.target import bastion_of

HOST_SCRIPT = "pinship-host.py"
# Run on the control machine in the export's folder with the host script and the <sha256> folders
# to pack: one module run makes the temporary zipapp and fills it (a task per step costs about a
# second), and says where it is. Its wheels/<sha256>/<file> entries are what onhost.unpack takes.
PACKER = ("import os, sys, tempfile, zipfile\n"
          "handle, path = tempfile.mkstemp(suffix='.pinship.pyz')\n"
          "with open(handle, 'wb') as out, zipfile.ZipFile(out, 'w') as pack:\n"
          "    pack.write(sys.argv[1], '__main__.py')\n"
          "    for digest in sys.argv[2:]:\n"
          "        for name in os.listdir(os.path.join('wheels', digest)):\n"
          "            pack.write(os.path.join('wheels', digest, name), 'wheels/%s/%s' % (digest, name))\n"
          "print(path)\n")
KNOWN_HOSTS = "known_hosts"
# A path the inventory can carry as it is: INI quoting and Jinja braces never come into it.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./~+@-]+")


@dataclass(frozen=True)
class Rollout:
    """How the switch goes: Ansible's `serial` (empty: one wave) and how many hosts may fail."""

    waves: tuple[int, ...]  # hosts each wave switches, in order (Ansible's serial); empty: one wave
    max_failures: int  # hosts that may fail (staging, or a wave's switch) while the others still switch
    rollback: bool  # past max-failures, every host the run switched goes back (on-wave-failure)

    @property
    def described(self) -> str:
        waves = "waves of " + ", ".join(str(w) for w in self.waves) + " hosts" if self.waves else "one wave"
        after = "the hosts switched go back" if self.rollback else "the hosts switched keep it"
        return f"{waves}; max-failures: {self.max_failures} (past it, {after})"


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
             "# a host whose key is not there, or differs, is refused, as `invoke deploy` refuses it;",
             "# so is a bastion's (jump), through which the hosts are then reached.",
             f"[{group(env)}]"]
    for alias, host in zip(aliases(env.hosts), env.hosts, strict=True):
        user = f" ansible_user={host.user}" if host.user else ""
        lines.append(f"{alias} ansible_host={host.hostname} ansible_port={host.port}{user}")
    pins = "-o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null"
    known = '"{{ inventory_dir }}/' + KNOWN_HOSTS + '"'  # quoted for ssh's own parser and the proxy's shell
    args = f"{pins} -o 'UserKnownHostsFile={known}'"
    bastion = bastion_of(env)
    if bastion is not None:
        # The hosts' connections run through the bastion (ssh -W, as ProxyJump does), its key
        # checked against the same pins; a ProxyCommand, as ProxyJump would not pass them on.
        login = f"-l {bastion.user} " if bastion.user else ""
        key = f"-i {identity} " if identity is not None else ""
        args += (f" -o 'ProxyCommand=ssh {pins} -o UserKnownHostsFile={known} {key}{login}-p {bastion.port} "
                 f"-W [%h]:%p {bastion.hostname}'")
    lines += ["", f"[{group(env)}:vars]", "ansible_host_key_checking=true", f"ansible_ssh_common_args={args}",
              f"ansible_python_interpreter={env.python}"]
    if identity is not None:
        lines.append(f"ansible_ssh_private_key_file={identity}")
    return "\n".join(lines) + "\n"


def _unsafe(value: str | None) -> str:
    """A string Ansible takes as it is, never as a template."""
    return "null" if value is None else f"!unsafe {json.dumps(value)}"


def playbook(env: Environment, built: Build, rollout: Rollout, command: str) -> str:
    """playbook.yml: play 1 stages everywhere and gates, play 2 switches in waves, play 3 settles."""
    release, hosts = built.release, len(env.hosts)
    return (_header(env, built, rollout, command) + _stage(env, built, rollout) + _hook(env, release)
            + _switch(env, release, rollout) + _settle(env, rollout, hosts))


def _run(step: str, extra: str = "", indent: int = 6, script: str = HOST_SCRIPT) -> str:
    """The task body that runs one step of pinship-host.py on the host; every value quoted."""
    pad = " " * indent
    return (f"{pad}ansible.builtin.script:\n"
            f"{pad}  cmd: \"{script} {step} "
            "{{ pinship_user | quote }} {{ pinship_machine | quote }}" + extra + "\"\n"
            f"{pad}  executable: \"{{{{ pinship_python }}}} -I -S\"\n")


def _failed_so_far(env: Environment) -> str:
    """How many hosts failed so far: never staged (failed or unreachable in play 1: they lack
    pinship_ready), or failed their switch or its checks in a wave."""
    hosts = f"groups['{group(env)}'] | map('extract', hostvars)"  # a group name is letters, digits and _
    return (f"({hosts} | rejectattr('pinship_ready', 'defined') | list | length) + ({hosts} "
            "| selectattr('pinship_switch', 'defined') | selectattr('pinship_switch', 'failed') | list | length)")


def _header(env: Environment, built: Build, rollout: Rollout, command: str) -> str:
    after = ("every host this run switched goes back (on-wave-failure = rollback)" if rollout.rollback
             else "the hosts that switched keep the release (on-wave-failure = keep)")
    return f"""\
# Written by `{command}`; run that again rather than editing this file.
# Installs pinship release {built.release} ({len(built.wheels)} wheels, wheels/<sha256>/ next to this file)
# on the hosts of `{env.name}` with the checks `invoke deploy` makes, through the same host agent
# (pinship-host.py): each wheel checked against its sha256 on the host, installed offline into a
# new release, the health check run there, `current` switched by rename, the lock held meanwhile.
# Play 1 stages on every host; if more than {rollout.max_failures} of the {len(env.hosts)} hosts fail (max-failures),
# no host switches. Play 2 switches in {rollout.described}; once more hosts failed than that, the later
# waves do not switch, and {after}. Ansible's max_fail_percentage is not used: it counts neither
# unreachable hosts nor the whole run, and it ends the playbook before a host could go back.
# Run: ansible-playbook -i inventory.ini playbook.yml; then check: invoke status --env {env.name}
"""


def _stage(env: Environment, built: Build, rollout: Rollout) -> str:
    release, hosts = built.release, len(env.hosts)
    # What the hosts still to stage lack, each wheel once: one pack serves them all.
    wanted = ("ansible_play_hosts | map('extract', hostvars, 'pinship_state') | rejectattr('live') "
              "| map(attribute='missing') | flatten | unique | sort")
    return f"""
- name: "pinship: stage release {release} on every host of {env.name}"
  hosts: {group(env)}
  gather_facts: false
  vars: &pinship
    pinship_release: "{release}"
    pinship_path: {_unsafe(env.path)}
    pinship_python: {_unsafe(env.python)}
    pinship_user: "{{{{ lookup('ansible.builtin.env', 'USER') | default('unknown', true) }}}}"
    pinship_machine: "{{{{ lookup('ansible.builtin.pipe', 'uname -n') }}}}"
    pinship_packer: {_unsafe(PACKER)}
  tasks:
    - name: take the lock, check the host's store, list the wheels it lacks
{_run("probe")}      register: pinship_probe
      changed_when: false

    - name: read what the host's store lacks
      ansible.builtin.set_fact:
        pinship_state: "{{{{ pinship_probe.stdout_lines | last | from_json }}}}"

    - name: the wheels any host lacks, listed once for all of them
      ansible.builtin.set_fact:
        pinship_wanted: "{{{{ {wanted} }}}}"
      run_once: true

    - name: "stage release {release}, the wheels a host lacks sent with the step's script"
      block:
        - name: pack the host script and the wheels any host lacks into a zipapp on this machine
          ansible.builtin.command:
            argv: "{{{{ [ansible_playbook_python, '-I', '-c', pinship_packer, '{HOST_SCRIPT}'] + pinship_wanted }}}}"
            chdir: "{{{{ playbook_dir }}}}"
          register: pinship_pack
          delegate_to: localhost
          run_once: true
          changed_when: false
          when: pinship_wanted | length > 0

        - name: stage release {release} with the wheels the host lacks (each checked against its sha256 there)
{_run("stage", indent=10, script="{{ pinship_pack.stdout | quote }}")}\
          when: not pinship_state.live and pinship_state.missing | length > 0

        - name: stage release {release}, its wheels in the host's store already
{_run("stage", indent=10)}          when: not pinship_state.live and pinship_state.missing | length == 0
      always:
        - name: remove the zipapp on this machine
          ansible.builtin.file:
            path: "{{{{ pinship_pack.stdout }}}}"
            state: absent
          delegate_to: localhost
          run_once: true
          when: pinship_pack.stdout is defined

    - name: "gate: no host switches if more than {rollout.max_failures} of {hosts} failed staging (max-failures)"
      ansible.builtin.fail:
        msg: >-
          {{{{ (ansible_play_hosts_all | length) - (ansible_play_hosts | length) }}}} of {hosts} hosts
          failed staging, more than max-failures = {rollout.max_failures}: no host switches
          ({{{{ ansible_play_hosts_all | difference(ansible_play_hosts) | join(', ') }}}})
      when: (ansible_play_hosts_all | length) - (ansible_play_hosts | length) > {rollout.max_failures}
      run_once: true
      any_errors_fatal: true
"""


def _hook(env: Environment, release: str) -> str:
    ready = """
    - name: staged, or live already
      ansible.builtin.set_fact:
        pinship_ready: true
"""
    if not env.run_once:
        return ready
    return f"""
    - name: "run-once on one host, in release {release}, before any host switches (a failure stops them all)"
{_run("run-once")}      when: ansible_play_hosts | map('extract', hostvars, ['pinship_state', 'live']) | reject | list
            | length > 0
      run_once: true
      any_errors_fatal: true
""" + ready


def _switch(env: Environment, release: str, rollout: Rollout) -> str:
    serial = f"  serial: {json.dumps(list(rollout.waves))}\n" if rollout.waves else ""
    return f"""
- name: "pinship: switch the hosts of {env.name} to release {release}, wave by wave"
  hosts: {group(env)}
  gather_facts: false
{serial}  vars: *pinship
  tasks:
    - name: "gate the wave: at most {rollout.max_failures} hosts failed so far (staging, or an earlier wave)"
      ansible.builtin.set_fact:
        pinship_go: "{{{{ ({_failed_so_far(env)}) <= {rollout.max_failures} }}}}"
      run_once: true

    - name: switch `current` to release {release} (restart and post-switch check; a failure switches back)
{_run("switch")}      register: pinship_switch
      ignore_errors: true  # counted by the next wave's gate and reported by the last play
      when: pinship_go | bool and not pinship_state.live
"""


def _settle(env: Environment, rollout: Rollout, hosts: int) -> str:
    switched = ("pinship_switch is defined and pinship_switch is succeeded and pinship_switch is not skipped "
                "and (pinship_switch.stdout_lines | last | from_json).switched")
    back = "" if not rollout.rollback else f"""
    - name: "on-wave-failure = rollback: past max-failures, every host this run switched goes back"
{_run("rollback", " {{ (pinship_switch.stdout_lines | last | from_json).previous | string | quote }}")}\
      when: pinship_failures | int > {rollout.max_failures} and {switched}
"""
    outcome = "went back to the release it served" if rollout.rollback else "keeps the release"
    return f"""
- name: "pinship: settle the hosts of {env.name}"
  hosts: {group(env)}
  gather_facts: false
  vars: *pinship
  tasks:
    - name: count the hosts that failed
      ansible.builtin.set_fact:
        pinship_failures: "{{{{ {_failed_so_far(env)} }}}}"
      run_once: true
{back}
    - name: a host whose switch failed fails the run (its error is above)
      ansible.builtin.fail:
        msg: the switch failed on this host, which serves the release it served before
      when: pinship_switch is defined and pinship_switch is failed

    - name: "past max-failures ({rollout.max_failures} of {hosts}) the rollout stopped"
      ansible.builtin.fail:
        msg: >-
          {{{{ pinship_failures }}}} of {hosts} hosts failed, more than max-failures = {rollout.max_failures}:
          the later waves did not switch, and each host this run switched {outcome}
      when: pinship_failures | int > {rollout.max_failures}
"""


def host_script(env: Environment, built: Build) -> str:
    """pinship-host.py: the host side (onhost.py), the agent and the release it installs."""
    source = resources.files("deploy.export").joinpath("onhost.py").read_text(encoding="utf-8")
    bundle = {"boot": BOOT, "parts": PARTS, "digest": AGENT_DIGEST, "path": env.path, "release": built.release,
              "environment": env.name, "manifest": built.manifest, "lock": built.lock_text,
              "healthcheck": env.healthcheck, "restart": env.restart, "keep": env.keep_releases,
              "timeout": env.command_timeout, "run_once": env.run_once, "post_switch": env.post_switch,
              "hook_timeout": env.hook_timeout}
    return (f"#!/usr/bin/env python3\n# Written by pinship for release {built.release}: the playbook runs it "
            f"on each host.\n{source}\n\nBUNDLE = {json.dumps(json.dumps(bundle, sort_keys=True))}\n\n"
            "if __name__ == \"__main__\":\n    sys.exit(main(sys.argv[1:], json.loads(BUNDLE), sys.argv[0]))\n")
