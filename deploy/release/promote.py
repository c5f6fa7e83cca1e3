"""`invoke promote`: deploy to one environment the exact release live on another.

It is the deploy pipeline with one step changed: instead of verify and build, `fetch` takes the
release live on the source environment, rebuilt here and compared wheel by wheel, and a check
that the target hosts run the interpreter it was built for. The same wheels, checked by hash.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from deploy.config import Config, Environment
from deploy.errors import DeployError, HostError
from deploy.lock.reqfile import canonical
from deploy.release import engine
from deploy.release.app import app_name
from deploy.release.build import Build
from deploy.release.build import build as build_release
from deploy.release.cache import Cache, Wheel, file_sha256
from deploy.release.engine import Job, Step, check_interpreters
from deploy.release.inspect import deploy_pins, source_wheels
from deploy.release.run import Progress, Run, Summary, detail
from deploy.remote.connect import start_keeper
from deploy.remote.target import Target


def promote(config: Config, source: Environment, to_env: Environment, *, progress: Progress,
            break_claim: bool = False) -> Summary:
    """Deploy to `to_env` the exact release live on every host of `source`, as this checkout
    vouches for it: the same release id, made of wheels the local lock and source account for."""
    kept = start_keeper(source, config.root)  # before any thread, as execute() starts the target's

    def fetch(job: Job) -> Summary | None:
        job.built = fetch_release(config, source, progress, kept=kept)
        return None

    steps: tuple[Step, ...] = (fetch, engine.probe, engine.pick_interpreter, fits_interpreter, *engine.DEPLOY[4:])
    return engine.execute(Job(config, to_env, "promote", progress, break_claim=break_claim), steps)


def fits_interpreter(job: Job) -> Summary | None:
    """A fetched release was built for one interpreter: the target hosts must run that one."""
    built = job.ready()
    job.release = built.release
    if built.manifest.get("python") == job.interpreter.describe():
        return None
    for result in job.run.results.values():
        result.fail(f"runs {job.interpreter.describe()}, but release {built.release} was built for "
                    f"{built.manifest.get('python')}: it cannot be promoted there")
    return job.stop()


def fetch_release(config: Config, source: Environment, progress: Progress, *, kept: Path | None = None) -> Build:
    """The release live on `source`, rebuilt here from the local lock and source, never taken
    on the source hosts' word: a compromised staging host must not be able to put a wheel on
    production. Staging only says which release is live and, to save downloads, supplies
    dependency wheels whose sha256 the local deploy lock names. The result must have the same
    release id (a digest of every wheel's hash), or promote refuses and says which wheels differ."""
    with Run.over(config, source, "promote", progress, kept=kept) as run:
        run.probe()
        failed = [f"{r.host}: {detail(r.error)}" for r in run.results.values() if r.error]
        if failed:
            raise DeployError(f"cannot read the source environment '{source.name}':\n  " + "\n  ".join(failed))
        release = _agreed_release(run, source)
        interpreter = check_interpreters(run)
        origin = run.targets[0]
        shipped = source_wheels(origin, release)
        _seed_cache(config, origin, release, shipped, progress)
    built = build_release(config, log=lambda line: progress("build", line), target=interpreter)
    ours = {w.name: w for w in built.wheels}
    theirs = {w.name: w for w in shipped}
    # Every wheel, not just the id: a manifest edited on the host (the id is a digest of the
    # release's lock) is a sign of tampering too.
    differ = [
        f"{name}: {origin.name} has {_describe(theirs.get(name))}, this checkout builds {_describe(ours.get(name))}"
        for name in sorted(ours.keys() | theirs.keys())
        if (ours.get(name) and ours[name].sha256) != (theirs.get(name) and theirs[name].sha256)
    ]
    if built.release != release or differ:
        raise DeployError(
            f"release {release} live on '{source.name}' is not what this checkout builds ({built.release}): "
            + "; ".join(differ or ["its manifest and this build agree, its lock does not"]),
            fix="check out the commit it was deployed from and run promote again, or deploy this checkout "
            f"to '{source.name}' first",
        )
    return built


def _agreed_release(run: Run, source: Environment) -> str:
    live = {t.name: run.results[t.name].probe["current"] for t in run.targets}
    if None in live.values() or len(set(live.values())) != 1:
        shown = ", ".join(f"{host} runs {release or 'nothing'}" for host, release in live.items())
        raise DeployError(
            f"the hosts of '{source.name}' do not agree on one live release: {shown}",
            fix=f"deploy or roll back '{source.name}' until every host runs the same release",
        )
    release: str = next(iter(live.values()))
    return release


def _seed_cache(config: Config, origin: Target, release: str, shipped: list[Wheel], progress: Progress) -> None:
    """Fetch from the source host the dependency wheels the local cache lacks, but only those
    whose sha256 the local deploy lock names for that very pin; anything else is refused."""
    pins = deploy_pins(config)
    if pins is None:
        raise DeployError("there is no deploy layer lock to promote against", fix="run: nox -s lock")
    name = app_name(config)
    app = canonical(name) if name else None
    cache = Cache(config.root / ".deploy" / "cache")
    vouched = []
    for wheel in shipped:
        if wheel.name == app:
            continue  # built here from the source and compared by hash: see fetch_release
        pin = pins.get(wheel.name)
        if pin is not None and pin.version == wheel.version and f"sha256:{wheel.sha256}" in pin.hashes:
            vouched.append(wheel)
        elif pin is None or pin.version != wheel.version:
            raise HostError(origin.name, f"release {release} ships {wheel.filename} (sha256 {wheel.sha256[:16]}…), "
                            "which the local deploy lock does not vouch for: refusing to promote it",
                            fix="if the lock changed since that release was deployed, deploy it again from this "
                            "checkout; otherwise inspect the host")
        # Else a wheel built from the pin's sdist (the lock hashes the sdist): never taken from the
        # host; the local build makes it (or has it cached) and the release id comparison decides.
    for wheel in dict.fromkeys(vouched):
        if wheel.sha256 in cache.by_hash:
            continue
        progress(origin.name, f"fetching {wheel.filename} from the source release")
        with tempfile.TemporaryDirectory(prefix="pinship-promote-") as tmp:
            local = Path(tmp) / wheel.filename  # a checked plain file name: it stays in tmp
            origin.get(f"{origin.env.path}/wheels/{wheel.sha256}/{wheel.filename}", local)
            if file_sha256(local) != wheel.sha256:
                raise HostError(origin.name, f"{wheel.filename} does not have the sha256 the local lock gives: "
                                "refusing to promote it", fix="inspect the host's wheel store")
            cache.add(local)


def _describe(wheel: Wheel | None) -> str:
    return f"{wheel.filename} (sha256 {wheel.sha256[:16]}…)" if wheel else "nothing"
