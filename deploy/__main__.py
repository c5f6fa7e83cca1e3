"""`python -m deploy`: the command line for locking, verifying and adopting the tool.

This is an entry point, so it is where DeployError becomes an exit code and a one-line message.
Each command imports what it needs when it runs: `python -m deploy verify` is the pre-commit
hook's path, and should not pay for the resolver, the audit or init's readers. Nor for the
parser: the hook, CI and onboarding run exactly `python -m deploy verify`, and argparse (its help
formatter, which imports shutil, and gettext's look-ups) cost that run ~7 ms of ~65; every other
command line, `--root DIR verify` and `verify --help` among them, goes through the parser.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from deploy import config as config_module
from deploy.errors import DeployError, VerifyFailed
from deploy.lock.reqfile import display, unusable_file

if TYPE_CHECKING:
    import argparse

MOVE_LOWER_HELP = "let an upper layer's input move a lower layer's pins (each move is printed)"

DESCRIPTION = (
    "Keep a project's requirements as layers (requirements/*.in) locked with hashes (*.txt): lock and "
    "upgrade them, check offline that they are fresh, audit the deploy layer, or adopt pinship in a "
    "project (init). Deploys, rollbacks and host status are invoke tasks: run `invoke --list`."
)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments == ["verify"]:
        return _guarded(lambda: _verify(None))
    args = build_parser().parse_args(arguments)
    if args.command in ("lock", "upgrade", "add", "remove"):
        from deploy.lock.solve import honour_ctrl_c

        honour_ctrl_c()
    return _guarded(lambda: _run(args))


def build_parser() -> argparse.ArgumentParser:
    """The command line's one parser: every command, its arguments and their help."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m deploy", description=DESCRIPTION)
    parser.add_argument("--root", type=Path, default=None, help="project folder (default: nearest pyproject.toml)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("verify", help="check offline that every lock is fresh and consistent")
    lock_parser = commands.add_parser("lock", help="compile requirements/*.in into hash-pinned .txt locks")
    lock_parser.add_argument("--move-lower", action="store_true", help=MOVE_LOWER_HELP)
    upgrade = commands.add_parser("upgrade", help="upgrade packages in every layer (all when none named)")
    upgrade.add_argument("packages", nargs="*", help="package names to upgrade, or PKG==X / PKG<X for a version")
    upgrade.add_argument("--move-lower", action="store_true", help=MOVE_LOWER_HELP)
    add = commands.add_parser("add", help="add requirements to a layer's input and lock, or change nothing")
    add.add_argument("specs", nargs="+", metavar="SPEC", help="PEP 508 requirements, e.g. 'requests>=2.31'")
    add.add_argument("--layer", help="the layer to add to (default: base, whose pyproject list is kept equal)")
    remove = commands.add_parser("remove", help="remove packages from the layers that ask for them and lock")
    remove.add_argument("packages", nargs="+", metavar="PKG", help="package names")
    remove.add_argument("--layer", help="only from this layer")
    audit_parser = commands.add_parser(
        "audit", help="pip-audit the deploy layer (exit 1: vulnerabilities found, 2: the audit could not run)"
    )
    audit_parser.add_argument("--osv-url", help="OSV API to query instead of PyPI's vulnerability data")
    scaffold = commands.add_parser("init", help="adopt the tool in this project")
    scaffold.add_argument("--force", action="store_true", help="overwrite files that already exist")
    scaffold.add_argument(
        "--from", dest="source", type=Path, metavar="FILE",
        help="the requirements file to adopt (a pip freeze file …), or pyproject.toml for the project's own "
        "declaration; needed when the project has more than one",
    )
    sync_parser = commands.add_parser(
        "sync", help="make the virtual environment this python runs in hold exactly the dev lock (as pip-sync "
        "does), the project installed editable"
    )
    sync_parser.add_argument("--layer", default="dev", help="the layer whose lock to install (default: dev)")
    return parser


def _guarded(command: Callable[[], int]) -> int:
    """Run a command, turning what it raises on purpose into one line and an exit code."""
    try:
        return command()
    except VerifyFailed as exc:
        for problem in exc.problems:
            print(f"verify: {problem}", file=sys.stderr)
        return 1
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {unusable_file(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "init":
        from deploy.scaffold import init

        # --from is relative to where the command runs, as a shell completes it, even with --root.
        source = args.source if args.source is None or args.root is None else args.source.absolute()
        init(args.root or Path.cwd(), force=args.force, source=source)
        return 0
    if args.command == "verify":
        return _verify(args.root)
    config = config_module.load(args.root)
    if args.command == "sync":
        from deploy.adopt import sync

        sync.sync(config, layer=args.layer)
        return 0
    if args.command == "audit":
        from deploy.lock import audit

        return audit.run_audit(config, args.osv_url)
    from deploy.lock.solve import lock

    if args.command == "lock":
        lock(config, move_lower=args.move_lower)
        return 0
    from deploy.lock import edit
    from deploy.render import lock_changes

    if args.command == "upgrade":
        result = lock(config, upgrade=args.packages, upgrade_all=not args.packages, move_lower=args.move_lower)
    elif args.command == "add":
        result = edit.add(config, args.specs, layer=args.layer)
    else:
        result = edit.remove(config, args.packages, layer=args.layer)
    _print(lock_changes(result.changes, lambda layer: display(config.requirements / f"{layer}.txt", config.root),
                        result.rewritten))
    return 0


def _verify(root: Path | None) -> int:
    from deploy.lock.verify import unchecked, verify

    config = config_module.load(root)
    note = unchecked(config)
    if note:
        print(f"verify: {note}")
    started = time.perf_counter()
    count = verify(config)
    print(f"verify: {count} layers fresh and consistent ({time.perf_counter() - started:.2f} s)")
    return 0


def _print(text: str) -> None:
    if text:
        print(text)


if __name__ == "__main__":
    sys.exit(main())
