"""Was it the network? pip's resolver failure told apart from an index it could not reach.

To pip an index that is down (or hangs) is an index without files: "from versions: none", and with
the existing pins as constraints that reads as a conflict between layers. pip's retry warnings name
the host and the error; with retries off nothing does, and each index pip used is tried directly.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from deploy.lock.reqfile import clip

Probe = Callable[[str, int], str | None]

_INDEXES = re.compile(r"^\s*Looking in indexes: (?P<urls>.+)$")
# WARNING: Retrying (Retry(total=4, …)) after connection broken by 'NewConnectionError("HTTPConnection(
#   host='127.0.0.1', port=9): Failed to establish a new connection: [Errno 111] Connection refused")': /simple/x/
_BROKEN = re.compile(
    r"connection broken by '(?P<error>\w+)\(.*?(?P<scheme>HTTPS?)Connection(?:Pool)?\(host='(?P<host>[^']*)', "
    r"port=(?P<port>\d+)\)(?P<detail>.*)$"
)
_ERRNO = re.compile(r"\[Errno -?\d+\] (?P<text>[^)\]\"']+)")
_NONE_FOUND = "(from versions: none)"
# requests reads the first six; pip's --proxy (PIP_PROXY, or `proxy` in a pip.conf, which the lock
# carries over as PIP_PROXY) overrides them.
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "PIP_PROXY")
_CREDENTIALS = re.compile(r"://(?P<user>[^/@:\s]+)(?::(?P<password>[^/@\s]*))?@")

INDEX_FIX = (
    "\n  fix: check that URL (--index-url/-i in requirements/*.in or [tool.deploy] compile-options, "
    "else PIP_INDEX_URL: a lock reads no pip.conf) and the network or proxy, then run the command again"
)


def unreachable(output: str, probe: Probe | None = None, *, suspect: bool = False) -> list[str]:
    """`the package index URL could not be reached (reason)`, one line per index pip could not reach.

    Without pip's retry warnings each index is probed when pip found no file at all for something
    ("from versions: none"), or when the caller `suspect`s the index (pip found no distribution).
    """
    indexes = _indexes(output)
    found: dict[str, str] = {}
    for raw in output.splitlines():
        if match := _BROKEN.search(raw):
            host, port, scheme = match.group("host"), int(match.group("port")), match.group("scheme").lower()
            shown_port = "" if port == (443 if scheme == "https" else 80) else f":{port}"
            url = _index_for(indexes, host, port) or f"{scheme}://{host}{shown_port}"
            found.setdefault(url, _reason(match.group("error"), match.group("detail")))
    # With retries off pip says nothing of the network: all that shows is that nothing was found.
    for url in dict.fromkeys(indexes) if not found and (suspect or _NONE_FOUND in output) and probe else ():
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            continue
        if parts.hostname and probe and (reason := probe(parts.hostname, port)) is not None:
            found[url] = reason
    return [f"the package index {redact(url)} could not be reached ({clip(reason)})" for url, reason in found.items()]


def _indexes(output: str) -> list[str]:
    """The index URLs pip used (passwords already hidden by pip), from pip-tools' and pip's own lines."""
    urls: list[str] = []
    listing = False
    for raw in output.splitlines():
        if raw.strip() == "Using indexes:":  # pip-tools -v, printed for PyPI too
            listing = True
        elif listing and raw.startswith(" ") and "://" in raw:
            urls.append(raw.strip())
        else:
            listing = False
            if match := _INDEXES.match(raw):  # pip: only for an index other than PyPI
                urls += [url.strip() for url in match.group("urls").split(",") if url.strip()]
    return list(dict.fromkeys(urls))


def _index_for(indexes: list[str], host: str, port: int) -> str | None:
    for url in indexes:
        parts = urlsplit(url)
        try:
            default = 443 if parts.scheme == "https" else 80
            if parts.hostname == host.lower() and (parts.port or default) == port:
                return url
        except ValueError:
            continue
    return None


def _reason(error: str, detail: str) -> str:
    if "refused" in detail.lower():
        return "connection refused"
    if error == "NameResolutionError" or "resolve" in detail.lower():
        errno = _ERRNO.search(detail)
        return "DNS lookup failed" + (f": {errno.group('text').strip()}" if errno else "")
    if "Timeout" in error or "timed out" in detail:
        return "timed out"
    errno = _ERRNO.search(detail)
    return errno.group("text").strip().lower() if errno else error


def proxied(env: Mapping[str, str]) -> bool:
    """Whether pip reaches the index through a proxy (then a direct probe says nothing about it)."""
    return any(env.get(key) for key in _PROXIES)


def redact(url: str) -> str:
    """pip hides passwords in the URLs it prints; hide any that reach a message some other way."""
    return _CREDENTIALS.sub(lambda m: f"://{m.group('user')}:****@" if m.group("password") else "://****@", url)


def probe(host: str, port: int, timeout: float = 5.0) -> str | None:
    """Why a TCP connection to host:port fails, in a few words; None when it succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"DNS lookup failed: {exc.strerror}"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return (exc.strerror or type(exc).__name__).lower()


