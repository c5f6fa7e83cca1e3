"""PEP 751 `pylock.<layer>.toml`: the same versions and hashes as the `.txt` lock, installable by pip."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import venv
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from deploy.errors import LockError
from deploy.lock import indexfiles, indexpage, pylock, sources
from deploy.lock.lockfile import Pin, parse
from deploy.lock.reqfile import canonical
from tests.lockproject import LockProject, Names, pins, publish
from tests.support import pkgindex
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index


def _write_pylock(project: LockProject, layer: str, index: PackageIndex, find_links: tuple[Path, ...] = ()) -> Path:
    lock = parse(project.path(f"{layer}.txt"), project.root)
    artifacts = indexfiles.locate(lock.pins.values(), [index.url], find_links, lock_folder=project.requirements)
    target = pylock.path_for(lock.path)
    target.write_text(pylock.render(layer, list(lock.pins.values()), artifacts, requires_python=">=3.8",
                                    source=f"requirements/{layer}.txt"), encoding="utf-8")
    return target


@pytest.fixture
def locked(use_index: PackageIndex, tmp_path: Path) -> tuple[LockProject, Names]:
    names = Names()
    project = LockProject.create(tmp_path / "app", publish(use_index, names))
    project.lock()
    return project, names


def test_the_pylock_file_holds_the_same_versions_and_hashes_as_the_txt_lock(
    locked: tuple[LockProject, Names], use_index: PackageIndex
) -> None:
    project, names = locked
    path = _write_pylock(project, "prod", use_index)
    assert path.name == "pylock.prod.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert data["lock-version"] == "1.0" and data["requires-python"] == ">=3.8"
    found = {}
    for package in data["packages"]:
        files = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
        for entry in files:
            # Every file is named as the index names it and located by its URL there: no local path.
            assert entry["url"].startswith(use_index.url.rsplit("/simple", 1)[0]), entry
            assert entry["url"].endswith("/" + entry["name"])
            assert "path" not in entry
        found[package["name"]] = (package["version"], tuple(sorted(f"sha256:{e['hashes']['sha256']}" for e in files)))
    expected = {name.lower(): value for name, value in pins(project.read("prod.txt")).items()}
    assert found == expected
    # The sdist-only dependency is an sdist entry, with the hash the index serves.
    [delta] = [p for p in data["packages"] if p["name"] == names.delta]
    assert delta["sdist"]["name"].endswith(".tar.gz") and "wheels" not in delta


def test_pip_installs_the_pylock_file_into_a_fresh_venv_with_exactly_the_locked_versions(
    locked: tuple[LockProject, Names], use_index: PackageIndex, tmp_path: Path
) -> None:
    project, _ = locked
    path = _write_pylock(project, "prod", use_index)
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-r", str(path)],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "list", "--format=json"],
                            capture_output=True, text=True, check=True)
    installed = {item["name"].lower(): item["version"] for item in json.loads(listed.stdout)}
    assert installed == {name.lower(): version for name, (version, _) in pins(project.read("prod.txt")).items()}


def test_verify_finds_a_tampered_or_stale_pylock_file(
    locked: tuple[LockProject, Names], use_index: PackageIndex
) -> None:
    project, names = locked
    path = _write_pylock(project, "prod", use_index)
    lock = parse(project.path("prod.txt"), project.root)
    assert pylock.check(path, lock.pins, project.root) == []
    original = path.read_text(encoding="utf-8")
    # A hand edit, even one that keeps the TOML valid, is caught by the content digest.
    path.write_text(original.replace('version = "1.0"', 'version = "1.1"', 1), encoding="utf-8")
    [problem] = pylock.check(path, lock.pins, project.root)
    assert "edited by hand" in problem and "requirements/pylock.prod.toml" in problem
    # A pylock file from an older solve: written intact, but the .txt now pins another version.
    path.write_text(original, encoding="utf-8")
    moved = dict(lock.pins)
    moved[names.alpha] = Pin(names.alpha, "9.9", moved[names.alpha].hashes)
    [problem] = pylock.check(path, moved, project.root)
    assert f"{names.alpha} 1.0, but the .txt lock pins 9.9" in problem
    path.unlink()
    assert pylock.check(path, lock.pins, project.root) == ["requirements/pylock.prod.toml is missing; run: nox -s lock"]


def test_a_vendored_wheel_is_named_by_its_path_beside_the_lock_never_an_absolute_one(tmp_path: Path) -> None:
    wheels = tmp_path / "requirements" / "wheels"
    wheels.mkdir(parents=True)
    wheel = wheels / "tool-1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a zip, but a file with a hash")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    pin = Pin("tool", "1.0", (f"sha256:{digest}",))
    artifacts = indexfiles.locate([pin], [], [wheels], lock_folder=tmp_path / "requirements")
    text = pylock.render("dev", [pin], artifacts, requires_python=None, source="requirements/dev.txt")
    [package] = tomllib.loads(text)["packages"]
    assert package["wheels"] == [{"name": wheel.name, "path": "wheels/tool-1.0-py3-none-any.whl",
                                  "hashes": {"sha256": digest}}]
    assert str(tmp_path) not in text


def test_a_locked_file_that_no_index_lists_stops_the_pylock_with_one_line(tmp_path: Path) -> None:
    pin = Pin("ghost", "1.0", ("sha256:" + "0" * 64,))

    def fetch(url: str) -> tuple[str, bytes]:
        assert url == "https://user:secret@example.invalid/simple/ghost/"
        return "text/html", b'<a href="../../f/ghost-1.0.tar.gz#sha256=' + b"1" * 64 + b'">ghost-1.0.tar.gz</a>'

    with pytest.raises(LockError) as caught:
        indexfiles.locate([pin], ["https://user:secret@example.invalid/simple"], lock_folder=tmp_path, fetch=fetch)
    message = str(caught.value)
    assert "ghost 1.0" in message and "secret" not in message and "example.invalid/simple" in message


def test_index_urls_keep_no_credentials_and_json_pages_are_read(tmp_path: Path) -> None:
    digest = "a" * 64
    page = {"files": [{"filename": "pkg-2.0-py3-none-any.whl", "url": "https://files.example/p/pkg-2.0-py3-none-any.whl",
                       "hashes": {"sha256": digest}}]}

    def fetch(url: str) -> tuple[str, bytes]:
        return "application/vnd.pypi.simple.v1+json", json.dumps(page).encode()

    found = indexfiles.locate([Pin("pkg", "2.0", (f"sha256:{digest}",))], ["https://tok@idx.example/simple/"],
                              lock_folder=tmp_path, fetch=fetch)
    assert found[digest].url == "https://files.example/p/pkg-2.0-py3-none-any.whl"
    assert found[digest].index == "https://idx.example/simple"


def test_a_page_read_ahead_is_taken_as_read_and_only_the_others_are_fetched(tmp_path: Path) -> None:
    # uv's proof reads each page whole while uv solves (pylocks.ReadAhead); the pylock step takes
    # those files as they are, and reads only a page no one read.
    one, other = "a" * 64, "b" * 64
    read = indexpage.listing(indexpage.JSON, json.dumps({"files": [
        {"filename": "one-1.0.tar.gz", "url": "https://files.example/one-1.0.tar.gz", "hashes": {"sha256": one}},
    ]}).encode())
    fetched: list[str] = []

    def fetch(url: str) -> tuple[str, bytes]:
        fetched.append(url)
        return "text/html", f'<a href="../../f/other-2.0.tar.gz#sha256={other}">other-2.0.tar.gz</a>'.encode()

    found = indexfiles.locate([Pin("one", "1.0", (f"sha256:{one}",)), Pin("other", "2.0", (f"sha256:{other}",))],
                              ["https://idx.example/simple"], lock_folder=tmp_path, fetch=fetch,
                              listed=lambda url: read if url.endswith("/one/") else None)

    assert fetched == ["https://idx.example/simple/other/"]
    assert found[one].url == "https://files.example/one-1.0.tar.gz"
    assert found[other].url == "https://idx.example/f/other-2.0.tar.gz"


def test_read_ahead_hands_over_a_reading_still_under_way_once_it_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The proof asks for a page as soon as uv ends, maybe while a fetching thread still reads it:
    # it waits for that reading rather than reading the page a second time in the main thread.
    from deploy.lock import pylocks

    project = LockProject.create(tmp_path / "app", {"base.in": "one\n"})
    page = (indexpage.JSON, json.dumps({"files": [{"filename": "one-1.0.tar.gz", "url": "u", "hashes": {}}]}).encode())
    monkeypatch.setattr(indexfiles, "fetcher", lambda env, **kw: lambda url: page)
    reading = threading.Event()

    def slow(url: str, listed: list[indexpage.File]) -> object:
        reading.set()
        threading.Event().wait(0.3)
        return [file.link_name for file in listed]

    config = project.config()
    from deploy.lock.layers import load

    graph = load(config.root, config.requirements, config.inputs_outside)
    with pylocks.ReadAhead(config, graph, {"PIP_INDEX_URL": "https://idx.example/simple"}) as ahead:
        ahead.read_with(slow)
        ahead(["one"])
        url = "https://idx.example/simple/one/"
        assert list(ahead.pending) == [url] and reading.wait(5)
        assert ahead.reading(url) == ["one-1.0.tar.gz"]
        assert [file.name for file in ahead.listing(url) or []] == ["one-1.0.tar.gz"]
        assert ahead.reading("https://idx.example/simple/never/") is None


def test_index_sources_follow_pip_options_and_variables(tmp_path: Path) -> None:
    env = {"PIP_INDEX_URL": "https://a.example/simple", "PIP_EXTRA_INDEX_URL": "https://b.example/simple"}
    indexes, links = sources.from_options(["--index-url=https://c.example/simple", "--find-links", "wheels"],
                                              env, tmp_path)
    assert indexes == ["https://c.example/simple", "https://b.example/simple"]
    assert links == [(tmp_path / "wheels").resolve()]
    assert sources.from_options([], {"PIP_NO_INDEX": "1"}, tmp_path) == ([], [])
    assert sources.from_options([], {}, tmp_path)[0] == [sources.PYPI]


def test_a_pylock_file_with_a_valid_digest_but_a_line_this_tool_never_writes_is_refused_by_line(tmp_path: Path) -> None:
    # verify reads pylock files with a strict reader of render()'s own lines (tomllib costs ~90 ms a
    # file): valid TOML in another form, even under a matching digest, is refused, never half-read.
    digest = "ab" * 32
    pin = Pin("tool", "1.0", (f"sha256:{digest}",))
    artifact = pylock.Artifact("tool-1.0.tar.gz", digest, url="https://files.example/tool-1.0.tar.gz")
    text = pylock.render("prod", [pin], {digest: artifact}, requires_python="==3.11.*", source="requirements/prod.txt")
    path = tmp_path / "requirements" / "pylock.prod.toml"
    path.parent.mkdir()
    head, body = text.split("\n", 3)[:3], text.split("\n", 3)[3]
    forged = body.replace('\nversion = "1.0"\n', "\nversion = '1.0'\n")
    head[2] = f"# content: sha256:{hashlib.sha256(forged.encode()).hexdigest()}"
    path.write_text("\n".join(head) + "\n" + forged, encoding="utf-8")
    assert tomllib.loads(path.read_text(encoding="utf-8"))["packages"][0]["version"] == "1.0"

    number = path.read_text(encoding="utf-8").splitlines().index("version = '1.0'") + 1
    assert pylock.check(path, {"tool": pin}, tmp_path, python="==3.11.*") == [
        f"requirements/pylock.prod.toml:{number}: not a line this tool writes; run: nox -s lock"]
    path.write_text(text, encoding="utf-8")
    assert pylock.check(path, {"tool": pin}, tmp_path, python="==3.11.*") == []
    assert pylock.check(path, {"tool": pin}, tmp_path, python="==3.12.*") == [
        "requirements/pylock.prod.toml: requires-python ==3.11.*, but the .txt lock was solved for ==3.12.*; "
        "run: nox -s lock"]


def test_an_index_url_with_a_token_is_read_with_basic_auth_and_the_token_is_never_written(tmp_path: Path) -> None:
    digest = "c" * 64
    heard: list[tuple[str, str | None]] = []
    server = _tok_page(digest, heard)
    try:
        index = f"http://ci:s3cret@127.0.0.1:{server.server_address[1]}/simple"
        found = indexfiles.locate([Pin("tok", "1.0", (f"sha256:{digest}",))], [index], lock_folder=tmp_path,
                                  fetch=indexfiles.fetcher({}))
    finally:
        server.shutdown()
        server.server_close()
    [(path, authorization)] = heard
    assert path == "/simple/tok/" and authorization == "Basic " + base64.b64encode(b"ci:s3cret").decode()
    text = pylock.render("prod", [Pin("tok", "1.0", (f"sha256:{digest}",))], found, requires_python=None,
                         source="requirements/prod.txt")
    assert "s3cret" not in text and f"http://127.0.0.1:{server.server_address[1]}/files/tok-1.0.tar.gz" in text


def test_a_page_the_index_sends_gzip_compressed_names_the_same_files(
    locked: tuple[LockProject, Names], use_index: PackageIndex
) -> None:
    # The pylock step asks for gzip (PyPI's largest pages are megabytes), and inflates what comes so.
    project, _ = locked
    pins_ = parse(project.path("dev.txt"), project.root).pins.values()
    plain = indexfiles.locate(pins_, [use_index.url], lock_folder=project.requirements,
                              fetch=indexfiles.fetcher({}))
    use_index.gzip_pages = True
    seen: list[bytes] = []
    fetch = indexfiles.fetcher({})

    def inflated(url: str) -> tuple[str, bytes]:
        content_type, body = fetch(url)
        seen.append(body)
        return content_type, body

    compressed = indexfiles.locate(pins_, [use_index.url], lock_folder=project.requirements, fetch=inflated)

    assert compressed == plain and len(plain) >= 5
    assert seen and all(body.startswith(b"<!DOCTYPE html>") for body in seen)


def test_pages_are_read_over_one_kept_connection_and_a_redirect_or_a_404_is_read_as_before(
    locked: tuple[LockProject, Names], use_index: PackageIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, names = locked
    fetch = indexfiles.fetcher({})
    pins_ = list(parse(project.path("dev.txt"), project.root).pins.values())
    ports: list[int] = []
    original = pkgindex._Handler.handle

    def handle(self: BaseHTTPRequestHandler) -> None:
        ports.append(self.client_address[1])
        original(self)

    monkeypatch.setattr(pkgindex._Handler, "handle", handle)
    found = indexfiles.locate(pins_[:1], [use_index.url], lock_folder=project.requirements, fetch=fetch)
    ports.clear()
    for pin in pins_[1:4]:
        fetch(indexfiles.page_url(use_index.url, canonical(pin.name)))
    kept = set(ports)
    moved = fetch(f"{use_index.url}{names.alpha}")  # the index redirects to the name with a slash
    with pytest.raises(urllib.error.HTTPError) as missing:
        fetch(indexfiles.page_url(use_index.url, "no-such-project"))

    assert found and moved[1] == fetch(indexfiles.page_url(use_index.url, names.alpha))[1]
    assert missing.value.code == 404
    assert len(kept) == 1, "three pages come over the one connection kept, not one each"


def test_a_proxy_named_by_http_proxy_still_carries_the_page_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Kept connections go straight to the index; a proxy the environment names must not be bypassed.
    heard: list[tuple[str, str | None]] = []
    server = _tok_page("c" * 64, heard)  # a proxy, here: it answers for any URL it is asked
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        # Port 9 on 127.0.0.2: nothing answers there, so only the proxy can.
        _, body = indexfiles.fetcher({})("http://127.0.0.2:9/simple/tok/")
    finally:
        server.shutdown()
        server.server_close()
    assert [path for path, _ in heard] == ["http://127.0.0.2:9/simple/tok/"] and b"tok-1.0.tar.gz" in body


def _tok_page(digest: str, heard: list[tuple[str, str | None]]) -> HTTPServer:
    """A server on 127.0.0.1 answering every GET with a page listing tok 1.0's sdist, and noting each
    request's path and Authorization header; the caller shuts it down."""

    class Index(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            heard.append((self.path, self.headers.get("Authorization")))
            body = f'<a href="/files/tok-1.0.tar.gz#sha256={digest}">tok-1.0.tar.gz</a>'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _answer(page: tuple[str, bytes], url: str) -> tuple[str, bytes]:
    return page


def test_only_the_locked_files_are_read_out_of_a_page_whatever_its_markup(tmp_path: Path) -> None:
    # A project's page lists every file of every version (70,000 for a web app's 65 projects on
    # PyPI), so each page is searched for the locked hashes alone; an anchor the quick search cannot
    # read plainly (an entity in its href) sends the page to html.parser whole, and nothing is missed;
    # other quoting, attributes, or the hash first met in other markup are read from the anchor alone.
    digests = {version: hashlib.sha256(version.encode()).hexdigest() for version in ("1.0", "2.0", "3.0")}
    locked = Pin("pkg", "2.0", (f"sha256:{digests['2.0']}",))

    def html(href: str) -> bytes:
        lines = [f'<a href="../../files/pkg-{v}.tar.gz#sha256={d}">pkg-{v}.tar.gz</a><br/>' for v, d in digests.items()]
        lines[1] = href
        return ("<!DOCTYPE html><html><body>\n" + "\n".join(lines) + "\n</body></html>").encode()

    plain = (f'<a href="../../files/pkg-2.0.tar.gz#sha256={digests["2.0"]}" data-requires-python="&gt;=3.8">'
             'pkg-2.0.tar.gz</a>')
    entity = f'<a href="../../files/pkg-2.0.tar.gz#sha256&#61;{digests["2.0"]}">pkg-2.0.tar.gz</a>'
    single = f"<a href='../../files/pkg-2.0.tar.gz#sha256={digests['2.0']}'>pkg-2.0.tar.gz</a>"
    other_first = (f'<abbr title="sha256={digests["2.0"]}">x</abbr> '  # the hash in other markup, first
                   f'<a href="../../files/pkg-2.0.tar.gz#sha256={digests["2.0"]}">pkg-2.0.tar.gz</a>')
    json_page = json.dumps({"meta": {"api-version": "1.0"}, "name": "pkg", "files": [
        {"filename": f"pkg-{v}.tar.gz", "url": f"../../files/pkg-{v}.tar.gz", "hashes": {"sha256": d}}
        for v, d in digests.items()]}).encode()
    pages = {f"page-{n}": ("text/html", html(href)) for n, href in enumerate((plain, entity, single, other_first))}
    pages["page-json"] = ("application/vnd.pypi.simple.v1+json", json_page)
    parsed: list[int] = []
    original = indexpage._anchors

    def counted(text: str, wanted: frozenset[str]) -> list[tuple[str, str, str]]:
        parsed.append(len(text))
        return original(text, wanted)

    for page, (content_type, body) in pages.items():
        parsed.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(indexpage, "_anchors", counted)
            found = indexfiles.locate([locked], [f"https://idx.example/{page}"], lock_folder=tmp_path,
                                      fetch=functools.partial(_answer, (content_type, body)))
        assert list(found) == [digests["2.0"]], page
        assert found[digests["2.0"]].url == "https://idx.example/files/pkg-2.0.tar.gz", page
        assert found[digests["2.0"]].name == "pkg-2.0.tar.gz", page
        whole = [size for size in parsed if size >= len(body) - 5]
        assert bool(whole) == (page == "page-1"), (page, parsed)  # only the entity needs the whole page


def test_a_late_host_look_up_is_asked_again_and_the_first_answer_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    # A resolver that drops a packet makes glibc wait 5 s (a uv lock took 6 s instead of 1.1 s, one in
    # ten on PyPI): the look-up is asked again after `patience`, and whichever answers first is taken.
    dropped = threading.Event()
    asked: list[float] = []

    def getaddrinfo(host: str, port: int, **options: object) -> list[tuple[object, ...]]:
        asked.append(time.monotonic())
        if len(asked) == 1:
            dropped.wait(10)  # the lost packet: answered only after the test ends
            raise OSError("late")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.7", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    started = time.monotonic()
    try:
        assert indexfiles.look_up("idx.example", 443, patience=0.1) == [("203.0.113.7", 443)]
    finally:
        dropped.set()
    assert len(asked) == 2 and asked[1] - started >= 0.1 and time.monotonic() - started < 2

    def refused(host: str, port: int, **options: object) -> list[tuple[object, ...]]:
        raise socket.gaierror("Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", refused)
    with pytest.raises(socket.gaierror, match="not known"):
        indexfiles.look_up("nowhere.example", 443)
