"""The lock's PEP 751 step: each layer's `pylock.<layer>.toml`, derived from its settled `.txt`.

A pylock file holds nothing a solve decides: its versions and hashes are its layer's `.txt` lock,
its `requires-python` the Python that `.txt` was solved for (pylock.requires_python), and its file
names and URLs what the index lists for those hashes (indexfiles.locate). So once the `.txt` locks
are settled (solved or left as they were), a layer gets its pylock file (re)written exactly when the
file is missing or does not `check` against the `.txt`: a no-op lock in a project that has just
turned `[tool.deploy] pylock` on writes them all without solving, and a solve that moved nothing
fetches nothing.

The indexes asked are the lock's own: `[tool.deploy] compile-options`, the layers' option lines,
and the index of the environment as isolation.py lets it reach pip-compile (never this machine's
pip.conf or other PIP_* settings, which the solve did not use either). A committed file must not
name one machine's disk: a layer whose files would come from a `file://` index or a find-links
folder outside the project gets no pylock file, and the lock says so in one line.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.config import Config
from deploy.lock import indexfiles, indexpage, isolation, pylock, sources
from deploy.lock.layers import LayerGraph
from deploy.lock.lockfile import LockFile, Pin
from deploy.lock.pylock import Artifact
from deploy.lock.reqfile import canonical, display, requirement_name

Log = Callable[[str], None]
FIX = "set [tool.deploy] pylock = false in pyproject.toml, or lock against an http(s) index"


@dataclass(frozen=True)
class PylockFile:
    """One pylock file to write with the `.txt` locks: where, its text, and how many packages it holds."""

    path: Path
    text: str
    count: int


class ReadAhead:
    """The pylock step's page fetches, started while uv still solves: called with the names each uv
    run locked (joint.Pages.read_ahead), it fetches their pages on the first index each layer's
    pylock file reads, eight at a time, for plan() to take (`ahead`). On PyPI the slowest page
    (boto3's, 3 s) then costs nothing where it used to come after the last run.

        ahead = ReadAhead(config, graph, env)   # then: with ahead: …solve…, plan(…, ahead=ahead)
    """

    def __init__(self, config: Config, graph: LayerGraph, env: Mapping[str, str] | None) -> None:
        pip_env = isolation.pip_environment(os.environ if env is None else env).env
        self.indexes: list[str] = []
        for name in graph.order:
            indexes, links = sources.of_layer(config, graph, name, pip_env)
            if indexes and sources.local_source(indexes, links, config.root) is None and indexes[0] not in self.indexes:
                self.indexes.append(indexes[0])
        self.pending: dict[str, concurrent.futures.Future[tuple[str, bytes]]] = {}
        # Once read_with(reader) is called, each page is read in the thread that fetched it: `read[url]`
        # is its files (indexpage.listing, which plan() takes as they are) and what `reader(url, files)`
        # made of them (uv's proof: its versions), or None when the page or its reading failed.
        self.reader: Callable[[str, list[indexpage.File]], object] | None = None
        self.read: dict[str, concurrent.futures.Future[tuple[list[indexpage.File], object] | None]] = {}
        self._fetch = indexfiles.fetcher(pip_env)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def __call__(self, names: Iterable[str]) -> None:
        for index in self.indexes:
            for name in names:
                self._start(indexfiles.page_url(index, canonical(name)))

    def page(self, index: str, name: str) -> tuple[str, bytes]:
        """`name`'s page on `index`, as fetched ahead (or now): uvreport.py reads it for the one-run proof."""
        return self._start(indexfiles.page_url(index, canonical(name))).result()

    def listing(self, url: str) -> list[indexpage.File] | None:
        """The files of the page at `url` as read ahead, once they are; None if it was not (or failed)."""
        found = self._done(url)
        return found[0] if found is not None else None

    def reading(self, url: str) -> object:
        """What the reader made of the page at `url`, once it has; None if it did not (or failed)."""
        found = self._done(url)
        return found[1] if found is not None else None

    def _done(self, url: str) -> tuple[list[indexpage.File], object] | None:
        done = self.read.get(url)
        return done.result() if done is not None else None

    def _start(self, url: str) -> concurrent.futures.Future[tuple[str, bytes]]:
        if url not in self.pending:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
            self.pending[url] = self._pool.submit(self._fetch, url)
            if self.reader is not None:
                self._read_when_fetched(url, self.reader)
        return self.pending[url]

    def read_with(self, reader: Callable[[str, list[indexpage.File]], object]) -> None:
        """From now on read each page in the pool's threads, those fetched already included."""
        self.reader = reader
        for url in list(self.pending):
            self._read_when_fetched(url, reader)

    def _read_when_fetched(self, url: str, reader: Callable[[str, list[indexpage.File]], object]) -> None:
        done: concurrent.futures.Future[tuple[list[indexpage.File], object] | None] = concurrent.futures.Future()
        self.read[url] = done
        fetched = self.pending[url]
        if fetched.done() and self._pool is not None:
            self._pool.submit(self._read, url, reader, done, fetched)
        else:
            fetched.add_done_callback(functools.partial(self._read, url, reader, done))

    def _read(self, url: str, reader: Callable[[str, list[indexpage.File]], object],
              done: concurrent.futures.Future[tuple[list[indexpage.File], object] | None],
              fetched: concurrent.futures.Future[tuple[str, bytes]]) -> None:
        found = None
        if not fetched.cancelled() and fetched.exception() is None:
            with contextlib.suppress(Exception):  # the one who needs it reads the page again, and says what is wrong
                listed = indexpage.listing(*fetched.result())
                found = (listed, reader(url, listed))
        done.set_result(found)

    def expect(self, graph: LayerGraph, existing: Mapping[str, LockFile]) -> None:
        """Start on the names the locks will most likely hold before any run ends: every layer's own
        requirements and every pin of the locks there are. The last run's new names would otherwise
        be fetched only after it (on PyPI, ruff's 3 MB page: 2 s after uv was done); a name that
        does not reach a lock costs one page read for nothing."""
        names = {name for layer in graph.layers.values() for line in layer.requirements
                 if (name := requirement_name(line.text)) is not None}
        self(sorted(names) + sorted({pin for lock in existing.values() for pin in lock.pins} - names))

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        """Fetches not yet begun are dropped (a failed solve, Ctrl-C); one under way ends on its own."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def plan(
    config: Config,
    graph: LayerGraph,
    locks: Mapping[str, tuple[str, Sequence[Pin]]],
    *,
    env: Mapping[str, str] | None,
    log: Log,
    pages: Mapping[str, tuple[str, bytes]] | None = None,
    ahead: ReadAhead | None = None,
) -> list[PylockFile]:
    """The pylock files to (re)write, given each layer's settled `.txt` (its text and its pins).

    Reads the index only for layers whose file is missing or stale, and only the project pages that
    are not among `pages` (those pip read while solving) or `ahead`'s (each taken as ReadAhead read it,
    when it did); raises LockError (one line: the package, its version and the indexes searched)
    when a locked file is on none of them, before anything is written.
    """
    if not config.pylock:
        return []
    pip_env = isolation.pip_environment(os.environ if env is None else env).env
    wanted: dict[str, tuple[tuple[str, ...], tuple[Path, ...]]] = {}
    for name in graph.order:
        text, pins = locks[name]
        target = pylock.path_for(graph.layers[name].lock)
        by_name = {canonical(pin.name): pin for pin in pins}
        if not pylock.check(target, by_name, config.root, python=pylock.requires_python(text)):
            continue
        indexes, links = sources.of_layer(config, graph, name, pip_env)
        local = sources.local_source(indexes, links, config.root)
        if local is not None:
            log(f"warning: {display(target, config.root)} is not written: {local}, a path on this machine that a "
                f"committed lock must not name; {FIX}")
            continue
        wanted[name] = (tuple(indexes), tuple(links))
    # Layers that read the same indexes share one look-up of their pins' files: an upper layer
    # holds most of a lower one's.
    found: dict[tuple[tuple[str, ...], tuple[Path, ...]], dict[str, Artifact]] = {}
    fetch = indexfiles.fetcher(pip_env, read=pages, pending=ahead.pending if ahead else None) if wanted else None
    for read in dict.fromkeys(wanted.values()):
        layers = [name for name, key in wanted.items() if key == read]
        union = {(pin.name, pin.version): pin for name in layers for pin in locks[name][1]}
        found[read] = indexfiles.locate(list(union.values()), read[0], read[1], lock_folder=graph.folder,
                                        fetch=fetch, listed=ahead.listing if ahead else None)
    written: list[PylockFile] = []
    for name, read in wanted.items():
        text, pins = locks[name]
        lock = graph.layers[name].lock
        rendered = pylock.render(name, pins, found[read], requires_python=pylock.requires_python(text),
                                 source=display(lock, config.root))
        written.append(PylockFile(pylock.path_for(lock), rendered, len(pins)))
    return written
