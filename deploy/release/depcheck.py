"""Do a release's wheels satisfy each other's requirements? The check `pip check` makes, done
once on the deploying machine, before any host is touched.

A release's venv holds exactly the release's wheels (made `--without-pip`, installed with no
dependency resolution), so reading each wheel's Requires-Dist and evaluating its markers for the
hosts' interpreter (which the hosts report in their probe) answers what `pip check` in every
venv would: and a missing or too-old dependency stops the deploy instead of failing on ten hosts.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from email.parser import HeaderParser
from pathlib import Path

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version


def wheel_requirements(path: Path) -> tuple[str, str, list[str]]:
    """(name, version, Requires-Dist lines) from a wheel's METADATA."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if len(names) != 1:
            raise ValueError(f"{path.name} has {len(names)} .dist-info/METADATA files, not one")
        text = archive.read(names[0]).decode("utf-8")
    message = HeaderParser().parsestr(text)
    return message["Name"], message["Version"], message.get_all("Requires-Dist") or []


def problems(wheels: Iterable[Path], environment: Mapping[str, str]) -> list[str]:
    """What `pip check` would report for a venv of exactly these wheels on `environment`."""
    found: dict[str, tuple[str, str, list[str]]] = {}
    for path in wheels:
        name, version, requires = wheel_requirements(path)
        found[canonicalize_name(name)] = (name, version, requires)
    markers = {**environment, "extra": ""}
    out: list[str] = []
    for name, version, requires in found.values():
        for line in requires:
            try:
                requirement = Requirement(line)
                applies = requirement.marker is None or requirement.marker.evaluate(markers)
            except (InvalidRequirement, InvalidMarker, UndefinedComparison, UndefinedEnvironmentName) as exc:
                out.append(f"{name} {version} has a requirement that cannot be read: {line!r} ({exc})")
                continue
            if not applies:
                continue
            have = found.get(canonicalize_name(requirement.name))
            if have is None:
                out.append(f"{name} {version} requires {requirement}, which is not in the release")
                continue
            try:
                ok = requirement.specifier.contains(Version(have[1]), prereleases=True)
            except InvalidVersion:
                ok = False
            if not ok:
                out.append(f"{name} {version} requires {requirement}, but the release has {have[0]} {have[1]}")
    return sorted(out)
