"""Progress while hosts are worked on: one live line per host on a terminal, plain lines otherwise.

On a terminal the block of host lines is redrawn in place (ANSI cursor-up), so thirty hosts stay
thirty lines; in CI logs and pipes every step is its own line, which reads well afterwards.
"""

from __future__ import annotations

import shutil
import threading
from typing import TextIO

from deploy.render import inert


class Board:
    def __init__(self, stream: TextIO, live: bool | None = None) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.lines: dict[str, str] = {}
        self.drawn = 0
        self.lock = threading.Lock()
        self.gone = False

    def __call__(self, host: str, message: str) -> None:
        # One line per call, whatever a message quotes from a host: a newline or an escape code in
        # it must not move the cursor or draw a line of its own.
        message = inert(message, 1000)
        with self.lock:
            if self.gone:
                return
            try:
                self._draw(host, message)
            except OSError:
                # The reader went away (`| head`) or the terminal closed: progress is only news,
                # and a deploy must not fail its hosts for it; the summary says what happened.
                self.gone = True

    def _draw(self, host: str, message: str) -> None:
        if not self.live:
            self.stream.write(f"{host}: {message}\n")
            self.stream.flush()
            return
        self.lines[host] = message
        width = shutil.get_terminal_size((100, 20)).columns - 1
        out = [f"\x1b[{self.drawn}F"] if self.drawn else []
        out += [f"\x1b[2K{f'{name}: {text}'[:width]}\n" for name, text in self.lines.items()]
        self.drawn = len(self.lines)
        self.stream.write("".join(out))
        self.stream.flush()
