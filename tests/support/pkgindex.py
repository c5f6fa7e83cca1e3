"""A tiny PEP 503 package index that tests build and serve on 127.0.0.1.

Lock and deploy tests need real pip and pip-compile runs, yet must never reach the network or
depend on what this machine's mirrors hold. So tests build the packages they need (wheels, and
sdists with a stdlib-only in-tree PEP 517 backend, since the index has no setuptools) and serve
them here. Every archive is built deterministically: the same arguments give the same bytes, so
hashes in lock files are stable.

Use it from a fixture, with pip isolated from the machine's own configuration::

    @pytest.fixture
    def index(tmp_path: Path) -> Iterator[PackageIndex]:
        with PackageIndex(tmp_path / "index") as served:
            yield served

    def test_lock_then_verify_offline(index: PackageIndex, tmp_path: Path) -> None:
        index.add("alpha", "1.0", ["beta>=2"])
        index.add("beta", "2.0", sdist_only=True)   # pip-compile must build its metadata
        env = isolated_pip_env(index.url, tmp_path / "cache")   # tests/support/pipenv.py
        subprocess.run([sys.executable, "-m", "piptools", "compile", ...], env=env, check=True)
        index.requests.clear()
        ...  # run verify
        assert index.requests == []   # it never asked the index for anything

Archives live as plain files under root and every request reads them afresh, so a test may add,
remove or corrupt archives while the index is serving.
"""

from __future__ import annotations

import base64
import csv
import functools
import gzip
import hashlib
import html
import inspect
import io
import re
import socket
import sys
import tarfile
import threading
import urllib.parse
import zipfile
from collections.abc import Mapping, Sequence
from email.parser import HeaderParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast

__all__ = ["PackageIndex", "build_sdist", "build_wheel", "normalize_project"]


def normalize_project(name: str) -> str:
    """Return the PEP 503 form of a project name, as used in index URLs."""
    return re.sub(r"[-_.]+", "-", name).lower()


# The helpers below are copied verbatim into every sdist as its PEP 517 backend, so a wheel built
# from an sdist is made by the same code as one built here. They may use only the standard
# library modules imported in _BACKEND_HEADER, and nothing else from this module.


def _dist_name(name: str) -> str:
    """Return the PEP 427 form of a project name, as used in archive file names."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _wheel_archive(
    name: str, version: str, metadata: str, files: Mapping[str, bytes]
) -> tuple[str, bytes]:
    """Return the file name and bytes of a py3-none-any wheel holding files."""
    dist_info = f"{_dist_name(name)}-{version}.dist-info"
    wheel = "Wheel-Version: 1.0\nGenerator: pinship-tests\nRoot-Is-Purelib: true\n"
    wheel += "Tag: py3-none-any\n"
    entries = {path: files[path] for path in sorted(files)}
    entries[f"{dist_info}/METADATA"] = metadata.encode()
    entries[f"{dist_info}/WHEEL"] = wheel.encode()
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in entries.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        writer.writerow([path, f"sha256={digest.decode()}", len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    entries[f"{dist_info}/RECORD"] = record.getvalue().encode()
    buffer = io.BytesIO()
    # Stored (not deflated) so the bytes do not depend on the local zlib build either.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path, data in entries.items():
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            archive.writestr(info, data)
    return f"{_dist_name(name)}-{version}-py3-none-any.whl", buffer.getvalue()


def _sdist_archive(name: str, version: str, files: Mapping[str, bytes]) -> tuple[str, bytes]:
    """Return the file name and bytes of an sdist whose source tree is files."""
    base = f"{_dist_name(name)}-{version}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for path in sorted(files):
            info = tarfile.TarInfo(f"{base}/{path}")
            info.size, info.mtime, info.mode = len(files[path]), 1577836800, 0o644
            archive.addfile(info, io.BytesIO(files[path]))
    # A fixed mtime leaves no time or file name in the gzip header, and level 0 (stored blocks)
    # leaves no room for differences between zlib builds, as for the wheel.
    return f"{base}.tar.gz", gzip.compress(buffer.getvalue(), compresslevel=0, mtime=0)


_BACKEND_HEADER = '''\
"""Stdlib-only PEP 517 backend written by tests/support/pkgindex.py."""
from __future__ import annotations
import base64, csv, gzip, hashlib, io, os, re, tarfile, zipfile
from collections.abc import Mapping
'''

_BACKEND_HOOKS = """
_CONTROL = {"PKG-INFO", "pyproject.toml", "_backend.py"}


def _metadata():
    with open("PKG-INFO", encoding="utf-8") as f:
        text = f.read()
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return text, fields["Name"], fields["Version"]


def _tree(control):
    files = {}
    for top, dirs, names in os.walk("."):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            path = os.path.relpath(os.path.join(top, name)).replace(os.sep, "/")
            if control or path not in _CONTROL:
                with open(path, "rb") as f:
                    files[path] = f.read()
    return files


def _write(directory, archive):
    filename, data = archive
    with open(os.path.join(directory, filename), "wb") as f:
        f.write(data)
    return filename


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    text, name, version = _metadata()
    dist_info = f"{_dist_name(name)}-{version}.dist-info"
    os.makedirs(os.path.join(metadata_directory, dist_info), exist_ok=True)
    with open(os.path.join(metadata_directory, dist_info, "METADATA"), "w") as f:
        f.write(text)
    return dist_info


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    text, name, version = _metadata()
    return _write(wheel_directory, _wheel_archive(name, version, text, _tree(control=False)))


def build_sdist(sdist_directory, config_settings=None):
    _, name, version = _metadata()
    return _write(sdist_directory, _sdist_archive(name, version, _tree(control=True)))
"""

_PYPROJECT = """\
[build-system]
requires = []
build-backend = "_backend"
backend-path = ["."]
"""


def _backend_source() -> str:
    shared = [inspect.getsource(f) for f in (_dist_name, _wheel_archive, _sdist_archive)]
    return "\n\n".join([_BACKEND_HEADER, *shared, _BACKEND_HOOKS])


def _core_metadata(
    name: str, version: str, requires: Sequence[str], python_requires: str | None
) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if python_requires is not None:
        lines.append(f"Requires-Python: {python_requires}")
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    return "\n".join(lines) + "\n"


def _sources(name: str, version: str, files: Mapping[str, str] | None) -> dict[str, bytes]:
    texts = {f"{_dist_name(name)}/__init__.py": f'__version__ = "{version}"\n', **(files or {})}
    for path in texts:
        if path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"package file {path!r} must be a relative path inside the package")
    return {path: text.encode() for path, text in texts.items()}


def _write_atomically(dest: Path, archive: tuple[str, bytes]) -> Path:
    # The server may be reading dest concurrently: it must never see a half-written archive.
    filename, data = archive
    dest.mkdir(parents=True, exist_ok=True)
    partial = dest / f".{filename}.partial"
    partial.write_bytes(data)
    return partial.replace(dest / filename)


def build_wheel(
    dest: Path,
    name: str,
    version: str,
    requires: Sequence[str] = (),
    python_requires: str | None = None,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Write a deterministic py3-none-any wheel into dest and return its path."""
    metadata = _core_metadata(name, version, requires, python_requires)
    sources = _sources(name, version, files)
    return _write_atomically(dest, _wheel_archive(name, version, metadata, sources))


def build_sdist(
    dest: Path,
    name: str,
    version: str,
    requires: Sequence[str] = (),
    python_requires: str | None = None,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Write a deterministic sdist, buildable offline without setuptools, into dest."""
    tree = _sources(name, version, files)
    tree["PKG-INFO"] = _core_metadata(name, version, requires, python_requires).encode()
    tree["pyproject.toml"] = _PYPROJECT.encode()
    tree["_backend.py"] = _backend_source().encode()
    return _write_atomically(dest, _sdist_archive(name, version, tree))


def _split_filename(filename: str) -> tuple[str, str] | None:
    """Return (project, version) of a wheel or sdist file name, or None for anything else."""
    for suffix in (".whl", ".tar.gz"):
        if filename.endswith(suffix) and not filename.startswith("."):
            parts = filename.removesuffix(suffix).split("-")
            if len(parts) >= 2:
                return normalize_project(parts[0]), parts[1]
    return None


def _requires_python(path: Path) -> str | None:
    """Read Requires-Python from an archive's metadata; None if absent or unreadable."""
    try:
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as wheel:
                name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
                text = wheel.read(name).decode()
        else:
            with tarfile.open(path) as sdist:
                member = next(m for m in sdist.getmembers() if m.name.endswith("/PKG-INFO"))
                text = cast(io.BufferedReader, sdist.extractfile(member)).read().decode()
    # Tests may serve deliberately broken archives; the index must still list them.
    except (OSError, StopIteration, UnicodeDecodeError, zipfile.BadZipFile, tarfile.TarError):
        return None
    value = HeaderParser().parsestr(text)["Requires-Python"]
    return None if value is None else str(value)


class PackageIndex:
    """Archives under root, served as a PEP 503 simple index on 127.0.0.1 while started."""

    def __init__(self, root: Path, *, cacheable: bool = False) -> None:
        self.root = root
        # Tests replace archives under one name, so by default no client may cache anything. The
        # benchmarks want what a real index gives: archives cached for good, pages revalidated.
        self.cacheable = cacheable
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests: list[str] = []
        self.visits: list[tuple[str, str]] = []  # (path, User-Agent) of each request, in order
        self.gzip_pages = False  # pages gzip-compressed for a client that accepts it, as PyPI's CDN does
        self._requests_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # cacheable only: the listing (by the folder's mtime) and each archive's link (by its stat),
        # computed once as a real index does, so a page costs what serving it costs.
        self._listing: tuple[int, dict[str, list[Path]]] | None = None
        self._anchors: dict[tuple[Path, int, int, bool], str] = {}
        # Projects whose page links carry no `#sha256=`, as an old or minimal index lists files.
        self.unhashed: set[str] = set()
        # project -> (content type, body) sent to pinship's own page reads (User-Agent `pinship`)
        # instead of the page: a broken or hostile mirror that pip and uv are not shown.
        self.pinship_sees: dict[str, tuple[str, bytes]] = {}

    def add(
        self,
        name: str,
        version: str,
        requires: Sequence[str] = (),
        *,
        sdist_only: bool = False,
        python_requires: str | None = None,
        files: Mapping[str, str] | None = None,
    ) -> Path:
        """Build a wheel (or only an sdist) into the index and return the archive's path."""
        if "-" in version:
            raise ValueError(f"version {version!r} must not contain '-'")
        build = build_sdist if sdist_only else build_wheel
        return build(self.root, name, version, requires, python_requires, files)

    def remove(self, name: str, version: str) -> None:
        """Delete every archive of name==version from the index."""
        wanted = (normalize_project(name), version)
        doomed = [path for path in self.root.iterdir() if _split_filename(path.name) == wanted]
        if not doomed:
            raise FileNotFoundError(f"{name} {version} is not in the index at {self.root}")
        for path in doomed:
            path.unlink()

    def projects(self) -> dict[str, list[Path]]:
        """Map each normalized project name to its archives, read afresh from root (a cacheable
        index reads it again only when root's mtime says an archive was added or removed)."""
        if self.cacheable:
            stamp = self.root.stat().st_mtime_ns
            if self._listing is None or self._listing[0] != stamp:
                self._listing = (stamp, self._scan())
            return self._listing[1]
        return self._scan()

    def anchor(self, archive: Path) -> str:
        """The page's link to an archive (a cacheable index computes it once per archive's stat)."""
        parsed = _split_filename(archive.name)
        hashed = parsed is None or parsed[0] not in {normalize_project(name) for name in self.unhashed}
        if not self.cacheable:
            return _anchor(archive, hashed=hashed)
        stat = archive.stat()
        key = (archive, stat.st_mtime_ns, stat.st_size, hashed)
        if key not in self._anchors:
            self._anchors[key] = _anchor(archive, hashed=hashed)
        return self._anchors[key]

    def _scan(self) -> dict[str, list[Path]]:
        found: dict[str, list[Path]] = {}
        for path in sorted(self.root.iterdir()):
            parsed = _split_filename(path.name)
            if parsed is not None and path.is_file():
                found.setdefault(parsed[0], []).append(path)
        return found

    @property
    def url(self) -> str:
        """The index URL to give pip: http://127.0.0.1:PORT/simple/."""
        if self._server is None:
            raise RuntimeError("PackageIndex.url is only known after start()")
        return f"http://127.0.0.1:{self._server.server_address[1]}/simple/"

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("PackageIndex is already started")
        self._server = _Server(self)
        # A short poll interval keeps stop() (run after every test) from idling half a second.
        serve = functools.partial(self._server.serve_forever, poll_interval=0.02)
        self._thread = threading.Thread(target=serve, name="pkgindex", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> PackageIndex:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, path: str, agent: str = "") -> None:
        with self._requests_lock:
            self.requests.append(path)
            self.visits.append((path, agent))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: uv opens dozens of connections at once, the kernel drops
    # the SYNs past the backlog, and each dropped one costs the client a 1 s retransmit.
    request_queue_size = 128

    def __init__(self, index: PackageIndex) -> None:
        self.index = index
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # A client hanging up mid-response is normal for pip; anything else is a bug worth a trace.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # Connections kept open between requests, as a real index keeps them (every reply has a length),
    # without Nagle's wait: on a kept connection the body's write would otherwise wait for the ACK of
    # the headers', which the client delays by 40 ms (a warm web-app lock took 4x as long).
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def _respond(self, send_body: bool) -> None:
        index = self.server.index
        index._record(self.path, self.headers.get("User-Agent", ""))
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path == "/simple":
            return self._redirect("/simple/")
        if path == "/simple/":
            links = [f'<a href="{p}/">{p}</a>' for p in index.projects()]
            return self._page("Simple index", links, send_body)
        if match := re.fullmatch(r"/simple/([^/]+)/?", path):
            project = normalize_project(match[1])
            if path != f"/simple/{project}/":
                return self._redirect(f"/simple/{project}/")
            if (seen := index.pinship_sees.get(project)) and self.headers.get("User-Agent") == "pinship":
                return self._send(seen[1], seen[0], send_body)
            if archives := index.projects().get(project):
                return self._page(project, [index.anchor(a) for a in archives], send_body)
        if match := re.fullmatch(r"/files/([^/]+)", path):
            archive = index.root / match[1]
            if _split_filename(archive.name) and archive.is_file():
                return self._send(archive.read_bytes(), "application/octet-stream", send_body, archive=True)
        self.send_error(HTTPStatus.NOT_FOUND)

    def _page(self, title: str, links: list[str], send_body: bool) -> None:
        body = (
            '<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0">'
            f"<title>{html.escape(title)}</title></head><body>\n"
            + "".join(f"{link}<br>\n" for link in links)
            + "</body></html>\n"
        )
        encoded = body.encode()
        if self.server.index.gzip_pages and "gzip" in self.headers.get("Accept-Encoding", ""):
            return self._send(gzip.compress(encoded), "text/html; charset=utf-8", send_body, encoding="gzip")
        self._send(encoded, "text/html; charset=utf-8", send_body)

    def _send(
        self, body: bytes, content_type: str, send_body: bool, *, archive: bool = False, encoding: str | None = None
    ) -> None:
        if not self.server.index.cacheable:
            # Tests replace archives under the same name; pip's HTTP cache must never answer for us.
            cache = {"Cache-Control": "no-store"}
        elif archive:
            cache = {"Cache-Control": "max-age=31536000, immutable"}
        else:
            etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
            cache = {"Cache-Control": "max-age=0, must-revalidate", "ETag": etag}
            if self.headers.get("If-None-Match") == etag:
                self.send_response(HTTPStatus.NOT_MODIFIED)
                for key, value in cache.items():
                    self.send_header(key, value)
                self.end_headers()
                return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if encoding is not None:
            self.send_header("Content-Encoding", encoding)
        for key, value in cache.items():
            self.send_header(key, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _anchor(archive: Path, *, hashed: bool = True) -> str:
    fragment = f"#sha256={hashlib.sha256(archive.read_bytes()).hexdigest()}" if hashed else ""
    attributes = f'href="../../files/{urllib.parse.quote(archive.name)}{fragment}"'
    if (requires_python := _requires_python(archive)) is not None:
        attributes += f' data-requires-python="{html.escape(requires_python)}"'
    return f"<a {attributes}>{html.escape(archive.name)}</a>"
