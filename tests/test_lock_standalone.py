"""A layer that references no other and that none references (pip.in, build.in, docs.in in real
projects) is an ordinary, independent lock; options that steer a solve must agree only within the
group of layers solved together (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.errors import LayerError
from deploy.lock.layers import load
from deploy.lock.lockfile import Pin, parse, render
from tests.lockproject import PYPROJECT, LockProject, Names, pins, publish
from tests.support.pkgindex import PackageIndex


def test_a_standalone_layer_locks_and_verifies_beside_the_others(use_index: PackageIndex, tmp_path: Path) -> None:
    names = Names()
    use_index.add(names.sphinx, "7.0", [names.theme])
    use_index.add(names.theme, "1.0")
    layers = publish(use_index, names)
    layers["docs.in"] = f"# the documentation build\n{names.sphinx}\n"
    project = LockProject.create(tmp_path / "project", layers)

    done = project.lock()

    assert "wrote requirements/docs.txt (2 pins)" in done.stdout
    assert set(pins(project.read("docs.txt"))) == {names.sphinx, names.theme}
    assert names.sphinx not in project.read("dev.txt"), "no other layer takes it in"
    assert project.run("verify").returncode == 0
    project.write("docs.in", project.read("docs.in") + f"{names.alpha}\n")
    stale = project.run("verify")
    assert stale.returncode == 1
    assert stale.stderr.splitlines() == [
        "verify: requirements/docs.txt is out of date: requirements/docs.in changed since it was locked; "
        "run: nox -s lock"
    ]


def test_a_standalone_lock_may_pin_another_version_than_the_app_layers(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    # Pins must agree across layers solved together, not across independent locks.
    names = Names()
    layers = publish(use_index, names)
    layers["pip.in"] = f"{names.alpha}\n"
    # The .txt is rewritten by hand below (with a made-up hash): its pylock file would rightly disagree.
    pyproject = PYPROJECT.format(name="p") + "pylock = false\n"
    project = LockProject.create(tmp_path / "project", layers, pyproject=pyproject)
    project.lock()
    lock = parse(project.path("pip.txt"))
    other = Pin(names.alpha, "0.9", ("sha256:" + "1" * 64,))
    project.write("pip.txt", render(["pinned apart"], lock.inputs, [other]))

    done = project.run("verify")

    assert done.returncode == 0, done.stderr


def _layers(tmp_path: Path, layers: dict[str, str]) -> LockProject:
    return LockProject.create(tmp_path / "project", layers)


def test_an_index_url_that_differs_between_layers_solved_together_names_both_lines(tmp_path: Path) -> None:
    project = _layers(tmp_path, {
        "base.in": "-i https://ci:s3cret@mirror.example/simple/\nalpha\n",
        "prod.in": "-r base.in\n",
        "test.in": "-c prod.txt\n--index-url https://other.example/simple/\nchecker\n",
    })

    for command in ("lock", "verify"):
        done = project.run(command)
        assert done.returncode == 1
        lines = done.stderr.splitlines()
        assert lines[0].split(": ", 1)[1] == (
            "requirements/test.in:2: '--index-url https://other.example/simple/' but requirements/base.in:1 says "
            "'--index-url https://ci:****@mirror.example/simple/'; the layers base, prod, test are solved together, "
            "so their index and pre-release options must agree"
        ), lines
        assert "compile-options" in lines[1]
        assert "s3cret" not in done.stdout + done.stderr


def test_an_index_option_only_one_layer_of_a_group_has_names_the_layer_that_lacks_it(tmp_path: Path) -> None:
    project = _layers(tmp_path, {
        "base.in": "alpha\n",
        "dev.in": "-r base.in\n--extra-index-url https://extra.example/simple/\nlinter\n",
    })

    with pytest.raises(LayerError) as caught:
        load(project.root, project.requirements)

    assert str(caught.value).splitlines()[0] == (
        "requirements/dev.in:2: '--extra-index-url https://extra.example/simple/' but requirements/base.in does not "
        "say it; the layers base, dev are solved together, so their index and pre-release options must agree"
    )


def test_index_options_read_through_r_agree_and_a_standalone_layer_may_have_its_own(tmp_path: Path) -> None:
    project = _layers(tmp_path, {
        "base.in": "--index-url https://mirror.example/simple/\n--pre\nalpha\n",
        "prod.in": "-r base.in\nbeta\n",
        "test.in": "-r prod.in\nchecker\n",
        "docs.in": "-i https://docs-mirror.example/simple/\nsphinx\n",
    })

    graph = load(project.root, project.requirements)

    assert sorted(graph.groups()) == [["base", "prod", "test"], ["docs"]]
    assert graph.lock_options("test") == [], "an index URL is never written into a lock"
