"""Hashes from the index pages: pipreport.py's run writes the lock plain pip-compile writes, without
reading a page twice, downloading a file the page gives a sha256 for, or asking for PyPI's JSON API.

Real pip-compile, with and without the hook, on the local index.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.lock import isolation, pipreport
from deploy.lock.freshness import COMPILE_OPTIONS
from tests.lockproject import Names
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index

OPTIONS = [*COMPILE_OPTIONS, "--annotation-style=line", "--no-header"]


def _compile(work: Path, output: str, *, hooked: bool) -> None:
    if hooked:  # as joint.py runs it when neither a report nor the pages are asked for
        command = [sys.executable, "-c", pipreport.BOOT, pipreport.__file__, "report.json", "", "", "compile"]
    else:
        command = [sys.executable, "-m", "piptools", "compile"]
    done = subprocess.run([*command, *OPTIONS, "-o", output, "x.in"], cwd=work, capture_output=True, text=True,
                          env=isolation.pip_environment(os.environ).env, check=False)
    assert done.returncode == 0, done.stderr


def test_hashes_from_the_pages_make_pip_compiles_lock_with_each_page_read_once(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    n = Names()
    use_index.add(n.alpha, "1.0")
    use_index.add(n.alpha, "1.0", sdist_only=True)  # two files of the pin: both hashes
    use_index.add(n.alpha, "1.1", python_requires=">=3.99")  # a file pip-compile leaves out
    use_index.add(n.beta, "1.0", [n.alpha])
    use_index.add(n.gamma, "1.0", sdist_only=True)
    use_index.add(n.delta, "2.0")
    use_index.add(n.delta, "2.0", sdist_only=True)
    use_index.unhashed.add(n.delta)  # its page gives no hash: its files are hashed as pip-compile does
    work = tmp_path / "work"
    work.mkdir()
    (work / "x.in").write_text(f"{n.beta}\n{n.gamma}\n{n.delta}\n", encoding="utf-8")

    use_index.requests.clear()
    _compile(work, "plain.txt", hooked=False)
    plain_requests = list(use_index.requests)
    use_index.requests.clear()
    _compile(work, "hooked.txt", hooked=True)
    hooked_requests = list(use_index.requests)

    plain = (work / "plain.txt").read_text(encoding="utf-8")
    assert (work / "hooked.txt").read_text(encoding="utf-8") == plain
    assert plain.count("--hash=sha256:") == 6, plain  # alpha's two files, beta, gamma, delta's two
    # pip-compile reads each page again to gather hashes and asks for the JSON API; the hook does
    # neither where the page gives the hashes.
    assert plain_requests.count(f"/simple/{n.alpha}/") == 2
    assert f"/{n.alpha}/json" in plain_requests  # pip-tools asks any index for it
    assert hooked_requests.count(f"/simple/{n.alpha}/") == 1
    # delta, whose page gives no hash, takes pip-compile's own way.
    assert [path for path in hooked_requests if path.endswith("/json")] == [f"/{n.delta}/json"], hooked_requests
    # Only the files pip needs for metadata are fetched, and delta's, which its page gives no hash for.
    fetched = sorted(path.rsplit("/", 1)[1] for path in hooked_requests if path.startswith("/files/"))
    assert [name for name in fetched if name.endswith(".tar.gz") and n.alpha.replace("-", "_") in name] == []
    assert any(n.delta.replace("-", "_") in name and name.endswith(".tar.gz") for name in fetched), fetched
