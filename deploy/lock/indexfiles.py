"""Which file each locked hash is: its name and URL as the package index lists it.

A requirements lock needs only `name==version --hash=…`; a PEP 751 `pylock.toml` names every file
(wheel or sdist) with where to get it. pip-compile does not write that down, so after a solve each
pinned project's page is read once from the index the lock was solved against (PEP 691 JSON where
the index offers it, else the PEP 503 HTML page) and every locked hash is matched to a listed file
by its sha256. A file in a local find-links folder (a wheel vendored into the project) is named by
its path relative to the lock instead, never by an absolute path. URLs keep no credentials.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import os
import queue
import socket
import threading
import urllib.error
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from deploy.errors import LockError
from deploy.lock import indexpage
from deploy.lock.lockfile import Pin
from deploy.lock.pylock import Artifact
from deploy.lock.reqfile import canonical, clip

if TYPE_CHECKING:
    import ssl
    import urllib.request  # a lock whose solve read every page it needs never loads it (nor ssl)

_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
# A project page is small; a page this large is not an index page.
_PAGE_LIMIT = 64 * 1024 * 1024

# (url) -> (content type, body); a test may pass its own.
Fetch = Callable[[str], "tuple[str, bytes]"]


def locate(
    pins: Iterable[Pin],
    indexes: Sequence[str],
    find_links: Sequence[Path] = (),
    *,
    lock_folder: Path,
    fetch: Fetch | None = None,
    listed: Callable[[str], Sequence[indexpage.File] | None] | None = None,
) -> dict[str, Artifact]:
    """sha256 -> the file it is, for every hash of every pin; one clear error when one is unknown.

    `listed(page URL)`, when given, is a page's files as read already (pylocks.ReadAhead), or None:
    such a page is neither fetched nor parsed again.
    """
    wanted: dict[str, Pin] = {}
    for pin in pins:
        for value in pin.hashes:
            algorithm, _, digest = value.partition(":")
            if algorithm == "sha256" and digest:
                wanted[digest] = pin
    found: dict[str, Artifact] = {}
    for folder in find_links:
        for artifact in _local_files(folder, lock_folder):
            if artifact.sha256 in wanted:
                found.setdefault(artifact.sha256, artifact)
    getter = fetch or fetcher({})
    for index in indexes:
        # Per project, the hashes still to be found on its page: only those files are read out of it
        # (PyPI's pages list every file of every version: 70,000 for a web app's 65 projects).
        missing: dict[str, set[str]] = {}
        for digest, pin in wanted.items():
            if digest not in found:
                missing.setdefault(canonical(pin.name), set()).add(digest)
        if not missing:
            break
        public = _public(index.rstrip("/"))
        to_read = []
        for name in sorted(missing):
            known = listed(page_url(index, name)) if listed is not None else None
            if known is None:
                to_read.append(name)
                continue
            for filename, href, digest in indexpage.matching(known, frozenset(missing[name])):
                found.setdefault(digest, _artifact(public, page_url(index, name), filename, href, digest))
        if not to_read:
            continue
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            pages = pool.map(_project_files, [index] * len(to_read), to_read, [getter] * len(to_read),
                             [frozenset(missing[name]) for name in to_read])
            for artifacts in pages:
                for artifact in artifacts:
                    found.setdefault(artifact.sha256, artifact)
    unknown = sorted(f"{pin.name} {pin.version}" for digest, pin in wanted.items() if digest not in found)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        searched = ", ".join(_public(index) for index in indexes) or "no index"
        raise LockError(
            f"no index lists the locked files of {clip(shown)} (searched {clip(searched)}): a pylock file must "
            "name every file it allows",
            fix="lock against the index these files come from, or turn pylock files off with "
            "[tool.deploy] pylock = false",
        )
    return found


def _local_files(folder: Path, lock_folder: Path) -> list[Artifact]:
    artifacts: list[Artifact] = []
    if not folder.is_dir():
        return artifacts
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.name.endswith((".whl", ".tar.gz", ".zip")):
            digest = hashlib.sha256(entry.read_bytes()).hexdigest()
            path = Path(os.path.relpath(entry, lock_folder)).as_posix()
            artifacts.append(Artifact(entry.name, digest, path=path))
    return artifacts


def page_url(index: str, name: str) -> str:
    """The index's page of project `name` (a canonical name): what locate reads for its files."""
    return f"{index.rstrip('/')}/{name}/"


def _project_files(index: str, name: str, fetch: Fetch, wanted: frozenset[str]) -> list[Artifact]:
    """The files of project `name`'s page on `index` whose sha256 is one of `wanted` (lower-case hex)."""
    page = page_url(index, name)
    try:
        content_type, body = fetch(page)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise LockError(f"{_public(page)}: the index answered HTTP {exc.code}", fix="check the index, then run: "
                        "nox -s lock") from None
    except (OSError, ValueError) as exc:
        raise LockError(f"{_public(page)}: could not read the index ({clip(str(exc))})",
                        fix="check the network and the index, then run: nox -s lock") from None
    try:
        listed = indexpage.files(content_type, body, wanted)
    except ValueError as exc:  # json's own errors are ValueErrors
        raise LockError(f"{_public(page)}: the index's page is not a project page ({clip(str(exc))})",
                        fix="check the index (or the proxy before it), then run: nox -s lock") from None
    public = _public(index.rstrip("/"))
    return [_artifact(public, page, filename, href, digest) for filename, href, digest in listed]


def _artifact(index: str, page: str, filename: str, href: str, digest: str) -> Artifact:
    url = href.split("#", 1)[0]  # `index` as _public gave it; a whole URL as urljoin and _public would leave it
    if not url.startswith(("https://", "http://")) or any(char in url for char in "@?;"):
        url = _public(urllib.parse.urljoin(page, href).split("#", 1)[0])
    return Artifact(filename, digest, url=url, index=index)


def _public(url: str) -> str:
    """`url` without user, password or token: a lock is committed, a credential must never be in it."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def fetcher(
    env: Mapping[str, str],
    *,
    read: Mapping[str, tuple[str, bytes]] | None = None,
    pending: Mapping[str, concurrent.futures.Future[tuple[str, bytes]]] | None = None,
) -> Fetch:
    """Read the index as the solve's pip reached it: the transport settings isolation.py keeps
    (PIP_CERT, PIP_CLIENT_CERT, PIP_PROXY, PIP_DEFAULT_TIMEOUT / PIP_TIMEOUT), else the defaults.

    A page among `read` (URL -> content type and body: what pip read while solving, joint.Pages) is
    taken from there, and one among `pending` (URL -> a fetch by this same function, started while
    uv solved: pylocks.ReadAhead) from its result, as it came: page or error; only the others are
    fetched, and only then is a connection set up.
    """
    known = {_public(url): page for url, page in (read or {}).items()}
    started = {_public(url): future for url, future in (pending or {}).items()}
    opened: list[Callable[[urllib.request.Request], tuple[str, bytes]]] = []
    opening = threading.Lock()  # ReadAhead's eight threads start at once: one opener (and CA load), not eight

    def fetch(url: str) -> tuple[str, bytes]:
        if (page := known.get(_public(url))) is not None:
            return page
        if (future := started.get(_public(url))) is not None:
            return future.result()
        import urllib.request

        with opening:
            if not opened:
                opened.append(_opener(env))
        # The project's own index, read as pip reads it (http or https), a `user:token@` in its URL
        # sent as basic authentication (to that host only: an unredirected header).
        parts = urllib.parse.urlsplit(url)
        request = urllib.request.Request(  # noqa: S310
            _public(url), headers={"Accept": _ACCEPT, "Accept-Encoding": "gzip", "User-Agent": "pinship"})
        if "@" in parts.netloc:
            user, _, password = parts.netloc.rsplit("@", 1)[0].partition(":")
            token = base64.b64encode(f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode())
            request.add_unredirected_header("Authorization", f"Basic {token.decode()}")
        return opened[0](request)

    return fetch


def _opener(env: Mapping[str, str]) -> Callable[[urllib.request.Request], tuple[str, bytes]]:
    import urllib.request

    contexts: list[ssl.SSLContext] = []
    openers: list[urllib.request.OpenerDirector] = []
    making = threading.Lock()

    def context() -> ssl.SSLContext:
        """The TLS settings, made on the first https page (loading the CA bundle takes tens of ms)."""
        import ssl

        with making:
            if not contexts:
                try:
                    made = ssl.create_default_context(cafile=env.get("PIP_CERT") or None)
                    if env.get("PIP_CLIENT_CERT"):
                        made.load_cert_chain(env["PIP_CLIENT_CERT"])
                    contexts.append(made)
                except OSError as exc:  # ssl.SSLError is one
                    raise LockError(
                        f"PIP_CERT or PIP_CLIENT_CERT: cannot be used to read the index ({clip(str(exc))})",
                        fix="point them at readable PEM files, or unset them, then run: nox -s lock") from None
        return contexts[0]

    def opener() -> urllib.request.OpenerDirector:
        """urllib's way, for a proxy and a redirect: made once."""
        handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=context())]
        if env.get("PIP_PROXY"):
            handlers.append(urllib.request.ProxyHandler({"http": env["PIP_PROXY"], "https": env["PIP_PROXY"]}))
        with making:
            if not openers:
                openers.append(urllib.request.build_opener(*handlers))
        return openers[0]

    try:
        timeout = float(env.get("PIP_DEFAULT_TIMEOUT") or env.get("PIP_TIMEOUT") or 60)
    except ValueError:
        timeout = 60.0
    found: dict[tuple[str, int], list[tuple[str, int]]] = {}
    looking = threading.Lock()

    def connect(address: tuple[str, int], wait: float | None = None, source: tuple[str, int] | None = None
                ) -> socket.socket:
        """socket.create_connection, with the host looked up once for every thread: eight look-ups at
        once are what a resolver drops (here, 5 s stalls one time in two), one is not."""
        with looking:
            if address not in found:
                found[address] = look_up(*address)
        failure: OSError | None = None
        for resolved in found[address]:
            try:
                return socket.create_connection(resolved, wait, source)
            except OSError as exc:
                failure = exc
        raise failure or OSError(f"{address[0]}: no address")

    def open_page(request: urllib.request.Request) -> tuple[str, bytes]:
        with opener().open(request, timeout=timeout) as response:
            return _page(response.headers.get("Content-Type", "text/html"), response.headers.get("Content-Encoding"),
                         response.read(_PAGE_LIMIT + 1))

    if env.get("PIP_PROXY"):
        return open_page
    proxies = urllib.request.getproxies()  # as urllib's opener reads them, from this process's environment
    kept = threading.local()

    def open_kept(request: urllib.request.Request) -> tuple[str, bytes]:
        """One connection per host and thread, kept open for the next page: a lock reads a page per
        project, and a new connection per page means a name look-up and a TLS handshake each time
        (seen here: look-ups stalled 5 s while uv ran). A redirect goes through urllib."""
        import http.client

        parts = urllib.parse.urlsplit(request.full_url)
        if parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname or ""):
            return open_page(request)  # through the proxy HTTPS_PROXY / HTTP_PROXY names, as urllib goes
        target = f"{parts.path or '/'}?{parts.query}" if parts.query else (parts.path or "/")
        headers = {**dict(request.header_items()), "Connection": "keep-alive"}
        connections: dict[tuple[str, str], http.client.HTTPConnection] = kept.__dict__.setdefault("connections", {})
        for attempt in (1, 2):  # a kept connection the server has since closed fails once
            connection = connections.get((parts.scheme, parts.netloc))
            if connection is None:
                connection = (http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=context())
                              if parts.scheme == "https" else http.client.HTTPConnection(parts.netloc, timeout=timeout))
                connection._create_connection = connect  # type: ignore[attr-defined]  # one look-up per host
                connections[(parts.scheme, parts.netloc)] = connection
            try:
                connection.request("GET", target, headers=headers)
                response = connection.getresponse()
                body = response.read(_PAGE_LIMIT + 1)
                break
            except (http.client.HTTPException, ConnectionError) as exc:
                connection.close()
                del connections[(parts.scheme, parts.netloc)]
                if attempt == 2:
                    raise OSError(str(exc) or type(exc).__name__) from None
        if response.status in (301, 302, 303, 307, 308):
            return open_page(request)
        if response.status >= 400:
            raise urllib.error.HTTPError(request.full_url, response.status, response.reason, response.headers, None)
        return _page(response.headers.get("Content-Type", "text/html"), response.headers.get("Content-Encoding"), body)

    return open_kept


def _page(content_type: str, encoding: str | None, body: bytes) -> tuple[str, bytes]:
    """An index page's content type and body, inflated if it came gzip-compressed (as it was asked)."""
    if (encoding or "").strip().lower() == "gzip":
        # A large project's page is a tenth of the size (PyPI's botocore: 2 MB as JSON).
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        body = inflate.decompress(body, _PAGE_LIMIT + 1)
    if len(body) > _PAGE_LIMIT:
        raise ValueError("the page is larger than any index page")
    return content_type, body


def look_up(host: str, port: int, *, patience: float = 0.5) -> list[tuple[str, int]]:
    """`host`'s addresses, asked again when the first answer is late: a resolver that drops one packet
    makes glibc wait 5 s before it asks again (on this project's CI machine, one look-up in thirty,
    a uv lock's whole time five times over). The first answer wins; a failure counts once both failed."""
    answers: queue.Queue[list[tuple[str, int]] | OSError] = queue.Queue()

    def ask() -> None:
        try:
            answers.put([(str(info[4][0]), int(info[4][1]))
                         for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)])
        except OSError as exc:
            answers.put(exc)

    threading.Thread(target=ask, daemon=True).start()
    try:
        answer = answers.get(timeout=patience)
    except queue.Empty:
        threading.Thread(target=ask, daemon=True).start()
        answer = answers.get()
        if isinstance(answer, OSError) and not isinstance(other := answers.get(), OSError):
            answer = other
    if isinstance(answer, OSError):
        raise answer
    return answer
