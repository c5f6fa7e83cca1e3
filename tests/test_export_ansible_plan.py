"""What `invoke export --to ansible` writes, checked offline: the rollout it reads from the
settings, the inventory's host key checking, a playbook ansible-playbook accepts, a host script any
Python 3.8 runs, and the bastion it reaches the hosts through."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.config import Environment, Host
from deploy.errors import ConfigError
from deploy.export import ansible
from deploy.release.build import Build
from deploy.release.cache import Wheel
from deploy.release.export import plan_rollout

HOSTS = tuple(Host("deploy", f"app{n}.example.com", 22) for n in range(1, 6))
WHEELS = [Wheel("alpha-1.0-py3-none-any.whl", "alpha", "1.0", "1" * 63 + "e", 10),
          Wheel("demoapp-1.0-py3-none-any.whl", "demoapp", "1.0", "ab" * 32, 20)]
BUILT = Build("0123456789ab", WHEELS, "alpha==1.0 --hash=sha256:...\n", {"release": "0123456789ab", "wheels": []}, {})


def fleet(**settings: object) -> Environment:
    return Environment("prod-eu", hosts=HOSTS, path="/srv/app", known_hosts="known_hosts", **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(("waves", "max_failures", "serial", "budget"), [
    ((), 0, (), 0),
    ((), "40%", (), 2),  # a percentage of 5 hosts, rounded down
    ((1, "25%", "100%"), 1, (1, 1, 3), 1),  # cumulative: 25% of 5 is 2 hosts by the end of the second wave
    ((2,), 0, (2, 3), 0),  # hosts past the last wave switch in a final one
])
def test_waves_and_max_failures_become_ansible_serial_and_the_failure_budget(
    waves: tuple[int | str, ...], max_failures: int | str, serial: tuple[int, ...], budget: int
) -> None:
    rollout = plan_rollout(fleet(waves=waves, max_failures=max_failures))
    assert (rollout.waves, rollout.max_failures, rollout.rollback) == (serial, budget, True)
    assert plan_rollout(fleet(on_wave_failure="keep")).rollback is False


def test_the_inventory_checks_every_host_key_against_the_pins_copied_next_to_it() -> None:
    text = ansible.inventory(fleet(), Path("/keys/deploy_ed25519"), "invoke export ...")
    assert "[prod_eu]\n" in text  # Ansible warns on '-' in a group name
    assert "app1.example.com ansible_host=app1.example.com ansible_port=22 ansible_user=deploy\n" in text
    assert ("ansible_ssh_common_args=-o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null "
            "-o 'UserKnownHostsFile=\"{{ inventory_dir }}/known_hosts\"'\n") in text
    assert "ansible_ssh_private_key_file=/keys/deploy_ed25519\n" in text
    twice = ansible.aliases((Host("a", "h", 22), Host("a", "h", 2222)))
    assert twice == ["h_22", "h_2222"]


def test_an_identity_path_the_inventory_cannot_carry_is_refused() -> None:
    with pytest.raises(ConfigError, match="identity /keys/my key: the inventory cannot carry this path"):
        ansible.inventory(fleet(), Path("/keys/my key"), "invoke export ...")


def test_behind_a_bastion_the_inventory_reaches_the_hosts_through_it_with_the_same_pins() -> None:
    text = ansible.inventory(fleet(jump="gate@bastion.example.com:2222"), Path("/keys/k"), "invoke export ...")
    assert ("-o 'ProxyCommand=ssh -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null "
            "-o UserKnownHostsFile=\"{{ inventory_dir }}/known_hosts\" -i /keys/k -l gate -p 2222 -W [%h]:%p "
            "bastion.example.com'") in text


def test_the_playbook_passes_ansible_playbook_syntax_check(tmp_path: Path) -> None:
    env = fleet(waves=(1, "50%"), max_failures=1, run_once="python -m demoapp migrate",
                post_switch="curl -fsS localhost:8000/health", healthcheck="python -c 'import demoapp'")
    (tmp_path / "inventory.ini").write_text(ansible.inventory(env, None, "invoke export ..."))
    playbook = ansible.playbook(env, BUILT, plan_rollout(env), "invoke export ...")
    (tmp_path / "playbook.yml").write_text(playbook)
    # Settings reach the playbook only as !unsafe values (never templated) or not at all (the host script).
    assert 'pinship_path: !unsafe "/srv/app"' in playbook
    assert "migrate" not in playbook and "curl" not in playbook
    assert "  serial: [1, 2, 2]\n" in playbook

    checked = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "--syntax-check",
                              "-i", str(tmp_path / "inventory.ini"), str(tmp_path / "playbook.yml")],
                             capture_output=True, text=True, check=False, cwd=tmp_path,
                             env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1",
                                  "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")})
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_host_script_is_python_3_8_and_says_how_to_run_it(tmp_path: Path) -> None:
    script = tmp_path / ansible.HOST_SCRIPT
    script.write_text(ansible.host_script(fleet(run_once="true"), BUILT))
    ast.parse(script.read_text(), feature_version=(3, 8))

    wrong = subprocess.run([sys.executable, "-I", "-S", str(script), "deploy"], capture_output=True, text=True,
                           check=False)

    assert wrong.returncode == 2
    assert wrong.stderr == ("usage: pinship-host.py probe|stage|run-once|switch USER MACHINE, "
                            "or rollback USER MACHINE RELEASE\n")


def test_the_playbook_sends_a_hosts_wheels_with_its_stage_step_however_many_the_release_has() -> None:
    many = [Wheel(f"pkg{n}-1.0-py3-none-any.whl", f"pkg{n}", "1.0", f"{n:064x}", 10) for n in range(40)]
    env = fleet()
    few_text = ansible.playbook(env, BUILT, plan_rollout(env), "invoke export ...")
    many_text = ansible.playbook(env, Build("0123456789ab", many, BUILT.lock_text, BUILT.manifest, {}),
                                 plan_rollout(env), "invoke export ...")

    def tasks(text: str) -> list[str]:
        return re.findall(r"(?m)^ +- name: (.*)$", text)

    # Ansible runs a module per item of a loop: a copy per wheel and host was most of a run. The
    # wheels travel inside the stage step's script instead, packed when the playbook runs.
    assert tasks(few_text) == tasks(many_text)
    assert "ansible.builtin.copy:" not in many_text
    assert "loop:" not in many_text and "pkg7" not in many_text
