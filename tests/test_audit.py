"""`nox -s audit` / `python -m deploy audit`: pip-audit over the deploy layer, exit codes split.

The vulnerability data comes from a fixture OSV service on 127.0.0.1, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.lockproject import LockProject, Names, publish
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index


class Advisories:
    """A tiny OSV `/v1/query` service: package name -> advisory ids affecting every version."""

    def __init__(self) -> None:
        self.affected: dict[str, str] = {}
        self.queries: list[str] = []
        advisories = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                name = body["package"]["name"]
                advisories.queries.append(name)
                vulns = []
                if name in advisories.affected:
                    vulns = [{"id": advisories.affected[name], "summary": "fixture advisory", "details": "",
                              "aliases": [], "affected": [{"package": {"name": name, "ecosystem": "PyPI"},
                              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "9.0"}]}]}]}]
                data = json.dumps({"vulns": vulns} if vulns else {}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test asserts on what the CLI prints, not the server."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/query"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def advisories() -> Iterator[Advisories]:
    service = Advisories()
    yield service
    service.server.shutdown()


@pytest.fixture
def project(use_index: PackageIndex, tmp_path: Path) -> tuple[LockProject, Names]:
    names = Names()
    locked = LockProject.create(tmp_path / "app", publish(use_index, names))
    locked.lock()
    return locked, names


def test_a_clean_deploy_layer_passes_the_audit(project: tuple[LockProject, Names], advisories: Advisories) -> None:
    locked, names = project
    done = locked.run("audit", "--osv-url", advisories.url)
    assert done.returncode == 0, done.stderr
    assert "no known vulnerabilities" in done.stdout
    assert names.alpha in advisories.queries and names.linter not in advisories.queries  # deploy layer only


def test_a_vulnerable_package_exits_1_and_names_the_upgrade(
    project: tuple[LockProject, Names], advisories: Advisories
) -> None:
    locked, names = project
    advisories.affected[names.beta] = "PYSEC-2026-1"
    done = locked.run("audit", "--osv-url", advisories.url)
    assert done.returncode == 1
    assert f"{names.beta} 1.0: PYSEC-2026-1 (fixed in 9.0; run: nox -s upgrade -- {names.beta})" in done.stdout


def test_an_audit_that_cannot_reach_its_service_exits_2(project: tuple[LockProject, Names]) -> None:
    locked, _ = project
    done = locked.run("audit", "--osv-url", "http://127.0.0.1:9/v1/query")
    assert done.returncode == 2
    assert "could not audit requirements/prod.txt" in done.stderr
    assert "Traceback" not in done.stderr
