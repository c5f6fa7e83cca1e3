"""The files an index's project page lists: PEP 691 JSON or PEP 503 HTML, read for the hashes a lock holds.

A project's page lists every file of every release (PyPI's: megabytes for boto3 or numpy), and a
lock wants a handful: only the files whose sha256 is wanted are read out of it (indexfiles.locate
asks, per project, for the hashes locked from it).
"""

from __future__ import annotations

import json
import urllib.parse
from html.parser import HTMLParser

JSON = "application/vnd.pypi.simple.v1+json"


def files(content_type: str, body: bytes, wanted: frozenset[str]) -> list[tuple[str, str, str]]:
    """(file name, URL as the page gives it, sha256) of each listed file whose sha256 is `wanted`, in page order."""
    if content_type.split(";")[0].strip() == JSON:
        return _json_files(body, wanted)
    return _html_files(body, wanted)


def _json_files(body: bytes, wanted: frozenset[str]) -> list[tuple[str, str, str]]:
    """(file name, URL, sha256) of each file of a PEP 691 page whose sha256 is `wanted`, in page order."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    files = data.get("files") if isinstance(data, dict) else None
    out = []
    for entry in files if isinstance(files, list) else []:
        hashes = entry.get("hashes") if isinstance(entry, dict) else None
        digest = hashes.get("sha256") if isinstance(hashes, dict) else None
        if (isinstance(digest, str) and digest.lower() in wanted and isinstance(entry.get("filename"), str)
                and isinstance(entry.get("url"), str)):
            out.append((entry["filename"], entry["url"], digest.lower()))
    return out


class Anchors(HTMLParser):
    """Each anchor of a PEP 503 page: its attributes (href, data-requires-python, data-yanked …)
    and its text, both unescaped (convert_charrefs)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.found.append((self._open, "".join(self._text).strip()))
            self._open = None


def _html_files(body: bytes, wanted: frozenset[str]) -> list[tuple[str, str, str]]:
    """(file name, URL, sha256) of each anchor of a PEP 503 page whose `#sha256=` is `wanted`, in page order.

    Each wanted hash is looked for in the page's bytes and only its anchor is parsed (a large
    project's page is megabytes that html.parser takes seconds over); the whole page is parsed when
    one is not found that way or its anchor is not the plain `<a href="…#sha256=…">name</a>`
    (entities, other markup): a hash the page lists is never missed.
    """
    quick = []
    for digest in wanted:
        at = body.find(b"sha256=" + digest.encode())
        if at < 0:
            break
        start, end = body.rfind(b"<a", 0, at), body.find(b"</a>", at)
        if start < 0 or end < 0:
            break
        anchors = _anchors(body[start:end + 4].decode("utf-8", "replace"), wanted)
        if len(anchors) != 1 or anchors[0][2] != digest:
            break
        quick.append((at, anchors[0]))
    else:
        return [anchor for _, anchor in sorted(quick)]
    return _anchors(body.decode("utf-8", "replace"), wanted)


def _anchors(html: str, wanted: frozenset[str]) -> list[tuple[str, str, str]]:
    parser = Anchors()
    parser.feed(html)
    out = []
    for attrs, text in parser.found:
        href = attrs.get("href")
        if href is None:
            continue
        fragment = urllib.parse.urlsplit(href).fragment
        digest = fragment[len("sha256="):].lower() if fragment.startswith("sha256=") else None
        if digest in wanted:
            filename = text or urllib.parse.unquote(urllib.parse.urlsplit(href).path.rsplit("/", 1)[-1])
            out.append((filename, href, digest))
    return out
