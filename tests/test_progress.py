"""Progress while hosts are worked on: a live line per host on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from deploy.progress import Board


def test_without_a_terminal_every_step_is_its_own_plain_line() -> None:
    out = io.StringIO()
    board = Board(out)
    board("app1", "connecting")
    board("app2", "connecting")
    board("app1", "installing")
    assert out.getvalue() == "app1: connecting\napp2: connecting\napp1: installing\n"
    assert "\x1b" not in out.getvalue()


def test_on_a_terminal_each_host_keeps_one_line_that_is_redrawn_in_place() -> None:
    out = io.StringIO()
    board = Board(out, live=True)
    board("app1", "connecting")
    board("app2", "sending 3 wheels (1.2 MB)")
    board("app1", "switched")
    # The last redraw moves up over the two host lines and rewrites both, app1's with its news.
    last = out.getvalue().rsplit("\x1b[2F", 1)[1]
    assert last == "\x1b[2Kapp1: switched\n\x1b[2Kapp2: sending 3 wheels (1.2 MB)\n"
