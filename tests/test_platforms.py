"""Wheels for the hosts' interpreter when it is not the deploying one (pip download --platform)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.errors import DeployError
from deploy.release.build import build
from deploy.release.platforms import Interpreter, agree
from tests.lockproject import LockProject, Names
from tests.support.pkgindex import PackageIndex

NO_APP = '[tool.deploy]\nrequirements = "requirements"\ndeploy-layer = "prod"\n'
LINUX_312 = Interpreter("cpython", "3.12", "linux", "x86_64", ("manylinux_2_36_x86_64", "manylinux2014_x86_64",
                                                                "linux_x86_64"))


def test_a_wheel_fits_an_interpreter_by_its_tags() -> None:
    assert LINUX_312.fits("alpha-1.0-py3-none-any.whl")
    assert LINUX_312.fits("fast-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert LINUX_312.fits("fast-1.0-cp38-abi3-manylinux2014_x86_64.whl")
    assert not LINUX_312.fits("fast-1.0-cp311-cp311-manylinux_2_17_x86_64.whl")
    assert not LINUX_312.fits("fast-1.0-cp312-cp312-manylinux_2_17_aarch64.whl")
    assert not LINUX_312.fits("fast-1.0-cp312-cp312-musllinux_1_1_x86_64.whl")


def test_hosts_on_one_interpreter_share_a_build_for_the_tags_they_all_accept() -> None:
    newer = Interpreter("cpython", "3.12", "linux", "x86_64", ("manylinux_2_36_x86_64", "manylinux_2_31_x86_64"))
    older = Interpreter("cpython", "3.12", "linux", "x86_64", ("manylinux_2_31_x86_64",))
    other = Interpreter("cpython", "3.11", "linux", "x86_64", ("manylinux_2_31_x86_64",))
    groups = agree([("app1", newer), ("app2", older), ("app3", other)])
    assert sorted(groups.values()) == [["app1", "app2"], ["app3"]]
    shared = next(found for found, hosts in groups.items() if hosts == ["app1", "app2"])
    assert shared.platform_tags == ("manylinux_2_31_x86_64",)


@pytest.mark.index
def test_a_release_for_another_python_is_fetched_for_it_and_an_sdist_only_package_is_refused(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    use_index.add(names.alpha, "1.0")
    use_index.add(names.gamma, "1.0", sdist_only=True)
    project = LockProject.create(tmp_path / "app", {"prod.in": f"{names.alpha}\n"}, pyproject=NO_APP)
    project.lock()

    release = build(project.config(), log=lambda line: None, target=LINUX_312)

    assert [w.name for w in release.wheels] == [names.alpha]
    assert release.manifest["python"] == "cpython 3.12 on linux-x86_64"

    project.write("prod.in", f"{names.alpha}\n{names.gamma}\n")
    project.lock()
    with pytest.raises(DeployError) as failure:
        build(project.config(), log=lambda line: None, target=LINUX_312)
    assert "no wheel for cpython 3.12 on linux-x86_64" in str(failure.value)
