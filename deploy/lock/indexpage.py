"""The files an index's project page lists: PEP 691 JSON or PEP 503 HTML, read for the hashes a lock holds.

A project's page lists every file of every release (PyPI's: megabytes for boto3 or numpy), and a
lock wants a handful: only the files whose sha256 is wanted are read out of it (indexfiles.locate
asks, per project, for the hashes locked from it). uv's one-run proof reads every file of a page
(candidates.py): it reads the page once into `listing`, which the pylock step then takes as it is.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from html.parser import HTMLParser

JSON = "application/vnd.pypi.simple.v1+json"


class File:
    """One file a page lists: `name` as the page names it (JSON's filename, an anchor's text), `href`
    as the page gives it (None for an anchor without one), its sha256 (lower-case hex) if given, its
    Requires-Python and whether it is yanked, and `link_name`: the file the link points at, which is
    the one uv reads (JSON's filename; for an anchor, its href's last part)."""

    __slots__ = ("href", "link_name", "name", "requires_python", "sha256", "yanked")

    def __init__(self, name: str, href: str | None, sha256: str | None, requires_python: str | None, yanked: bool,
                 link_name: str) -> None:
        self.name, self.href, self.sha256 = name, href, sha256
        self.requires_python, self.yanked, self.link_name = requires_python, yanked, link_name


def files(content_type: str, body: bytes, wanted: frozenset[str]) -> list[tuple[str, str, str]]:
    """(file name, URL as the page gives it, sha256) of each listed file whose sha256 is `wanted`, in page
    order; ValueError for a JSON page that is not one."""
    if _is_json(content_type):
        return matching(_json_listing(body), wanted)
    return _html_files(body, wanted)


def listing(content_type: str, body: bytes) -> list[File]:
    """Every file of a page, in page order; ValueError for a JSON page that is not one."""
    if _is_json(content_type):
        return _json_listing(body)
    return _html_listing(body.decode("utf-8", "replace"))


def _is_json(content_type: str) -> bool:
    return content_type.split(";")[0].strip() == JSON


def matching(listed: Sequence[File], wanted: frozenset[str]) -> list[tuple[str, str, str]]:
    """(file name, URL, sha256) of each of `listed` whose sha256 is `wanted`, in page order."""
    return [(file.name, file.href, file.sha256) for file in listed
            if file.sha256 in wanted and file.href is not None and file.name]


def _json_listing(body: bytes) -> list[File]:
    data = json.loads(body)
    entries = data.get("files") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError("a JSON index page without a list of files")
    listed = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        filename, url, hashes = entry.get("filename"), entry.get("url"), entry.get("hashes")
        digest = hashes.get("sha256") if isinstance(hashes, dict) else None
        requires, yanked = entry.get("requires-python"), entry.get("yanked")
        name = filename if isinstance(filename, str) else ""
        listed.append(File(name, url if isinstance(url, str) else None,
                           digest.lower() if isinstance(digest, str) else None,
                           requires if isinstance(requires, str) and requires else None,
                           yanked is True or bool(isinstance(yanked, str) and yanked), name))
    return listed


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
    return matching(_html_listing(html), wanted)


def _html_listing(html: str) -> list[File]:
    parser = Anchors()
    parser.feed(html)
    listed = []
    for attrs, text in parser.found:
        href = attrs.get("href")
        parts = urllib.parse.urlsplit(href or "")
        linked = urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
        digest = parts.fragment[len("sha256="):].lower() if parts.fragment.startswith("sha256=") else None
        listed.append(File(text or linked, href, digest, attrs.get("data-requires-python"), "data-yanked" in attrs,
                           linked or text))
    return listed
