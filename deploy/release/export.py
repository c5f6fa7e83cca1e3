"""`invoke export --env E --to ansible --out DIR`: the release `invoke deploy` would ship, handed
to Ansible for fleets past what one machine deploys to.

The release is made by the deploy's own steps (verify → probe the hosts → pick their interpreter →
build → pip check), so DIR holds exactly the wheels a deploy would send, by sha256. DIR is laid
out as a host's deploy path is, content-addressed:

    DIR/wheels/<sha256>/<file>.whl            DIR/releases/<id>/{manifest.json,requirements.lock}
    DIR/inventory.ini  DIR/known_hosts        DIR/playbook.yml  DIR/pinship-host.py

It is written into a fresh folder beside DIR and renamed into place, so a DIR is always one
whole export; an earlier export there is replaced, any other non-empty folder refused.
"""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from deploy.config import Config, Environment
from deploy.errors import ConfigError, DeployError
from deploy.export import ansible
from deploy.portions import allowed_failures, wave_sizes
from deploy.release import engine
from deploy.release.build import Build
from deploy.release.cache import check_wheel, file_sha256
from deploy.release.run import Progress, detail
from deploy.remote.target import identity_file
from deploy.remote.trust import check_known_hosts
from deploy.render import inert

MARKER = ".pinship-export"  # in every DIR an export wrote: only such a DIR is replaced
TARGETS = ("ansible",)
# The deploy's steps up to a checked release; nothing after them touches a host.
STEPS: tuple[engine.Step, ...] = (engine.verify, engine.probe, engine.pick_interpreter, engine.build,
                                  engine.check_dependencies)


@dataclass
class Exported:
    out: Path
    release: str
    wheels: int
    size: int
    hosts: int
    rollout: ansible.Rollout
    unprobed: list[str] = field(default_factory=list)  # hosts the probe could not reach: each a line


def export(config: Config, env: Environment, *, to: str, out: Path, progress: Progress) -> Exported:
    """Build the release for `env`'s hosts and write what `to` needs to install it into `out`."""
    if to not in TARGETS:
        raise ConfigError(f"--to {to!r}: pinship exports to {', '.join(TARGETS)}",
                          fix=f"run: invoke export --env {env.name} --to ansible --out DIR")
    if env.is_local:
        raise ConfigError(f"'{env.name}' has no hosts: an export is for hosts another engine reaches",
                          fix="run: invoke export --env NAME --to ansible --out DIR, NAME an environment with hosts")
    rollout = plan_rollout(env)
    identity = identity_file(env)
    known = config.root / (env.known_hosts or "")
    check_known_hosts(known, env.name)
    target = check_out(out)
    command = f"invoke export --env {env.name} --to {to} --out {shlex.quote(str(out))}"
    built, unprobed = build_release(config, env, progress)
    write(target, env, built, rollout, known, identity.resolve() if identity else None, command)
    return Exported(target, built.release, len(built.wheels), sum(w.size for w in built.wheels), len(env.hosts),
                    rollout, unprobed)


def build_release(config: Config, env: Environment, progress: Progress) -> tuple[Build, list[str]]:
    """The deploy's steps up to the release (no keeper: an export is one run); hosts the probe
    could not reach, when no more than max-failures, are named, not fatal: Ansible may reach them."""
    job = engine.Job(config, env, "export", progress)
    with job.stack, job.background:
        try:
            for step in STEPS:
                done = step(job)
                if done is not None:
                    failed = [f"{r.host}: {detail(r.error)}" for r in done.hosts if r.error is not None]
                    raise DeployError("the hosts could not be probed for their Python, so no release was built:\n  "
                                      + "\n  ".join(failed or ["interrupted"]),
                                      fix=f"check the hosts (invoke status --env {env.name}), then export again")
        finally:
            job.end_build.set()
            if job.app is not None:
                job.app.cancel()
        unprobed = [f"{r.host}: {detail(r.error)}" for r in job.run.results.values() if r.error is not None]
    return job.ready(), unprobed


def plan_rollout(env: Environment) -> ansible.Rollout:
    """Ansible's serial (the number of hosts each wave switches) and the failure budget, from the
    environment's waves and max-failures by the deploy's own rules (deploy/portions.py)."""
    hosts = len(env.hosts)
    sizes = [size for _, size in wave_sizes(env.waves, hosts) if size > 0] if env.waves else []
    return ansible.Rollout(tuple(sizes), allowed_failures(env.max_failures, hosts), env.on_wave_failure == "rollback")


def check_out(out: Path) -> Path:
    """The folder to write: new, empty, or an earlier export (replaced whole)."""
    if not str(out).isprintable():
        raise ConfigError(f"--out {inert(str(out), 200)}: holds control characters", fix="name a plain folder")
    out = out.expanduser().absolute()
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ConfigError(f"--out {out}: not a folder", fix="name a new folder, e.g. --out build/ansible")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ConfigError(f"--out {out}: holds files that no export wrote; an export replaces its folder whole",
                          fix="name a new or empty folder, e.g. --out build/ansible")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: its parent folder does not exist", fix=f"run: mkdir -p {out.parent}")
    return out


def write(out: Path, env: Environment, built: Build, rollout: ansible.Rollout, known: Path,
          identity: Path | None, command: str) -> None:
    """Everything into a fresh folder beside `out`, then renamed over it."""
    fresh = out.with_name(f".{out.name}.pinship-{secrets.token_hex(4)}")
    fresh.mkdir()
    try:
        for wheel in built.wheels:
            local = built.file(wheel)
            check_wheel(local)
            copy = fresh / "wheels" / wheel.sha256 / wheel.filename
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, copy)  # a copy, not a link: an edit in DIR must never reach the cache
            if file_sha256(copy) != wheel.sha256:
                raise DeployError(f"{copy}: the copy of {wheel.filename} does not match its sha256",
                                  fix="check the disk, then export again")
        release = fresh / "releases" / built.release
        release.mkdir(parents=True)
        (release / "manifest.json").write_text(json.dumps(built.manifest, indent=2, sort_keys=True) + "\n")
        (release / "requirements.lock").write_text(built.lock_text)
        shutil.copyfile(known, fresh / ansible.KNOWN_HOSTS)
        (fresh / "inventory.ini").write_text(ansible.inventory(env, identity, command))
        (fresh / "playbook.yml").write_text(ansible.playbook(env, built, rollout, command))
        (fresh / ansible.HOST_SCRIPT).write_text(ansible.host_script(env, built))
        (fresh / MARKER).write_text(json.dumps({"release": built.release, "environment": env.name}) + "\n")
        old = out.with_name(f".{out.name}.pinship-old-{secrets.token_hex(4)}")
        if out.exists():
            out.rename(old)
        fresh.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise


def render(done: Exported, env: str) -> str:
    """What an export says when it is done: what it wrote, and the two commands that follow."""
    lines = [f"exported release {done.release} ({done.wheels} wheels, {done.size / 1e6:.1f} MB) for the "
             f"{done.hosts} hosts of {env} to {done.out}",
             f"  {done.rollout.described}"]
    lines += [f"  not probed (the playbook still lists it): {line}" for line in done.unprobed]
    inventory, playbook = shlex.quote(str(done.out / "inventory.ini")), shlex.quote(str(done.out / "playbook.yml"))
    lines += [f"next: ansible-playbook -i {inventory} {playbook}", f"then: invoke status --env {env}"]
    return "\n".join(lines)
