"""The host side: stdlib-only code sent as source to each host (any Python 3.8+) and run there as
the package pinship_agent (boot.py), never imported by the deploying side except by tests.

Each part imports the others relatively (`from .store import live`), so the same files are the
package deploy.agent here and pinship_agent on a host. Who calls whom, bottom up:
protocol (the wire) <- files <- store <- claim; command; venv; record, scripts <- wheel <- reuse;
status (probe, status, read), hooks (run-once, post-switch) <- release (stage, switch, abort) <- serve (the loop).
"""

# The modules sent to a host with this one (send order does not matter: they import each other).
# boot.py is not one of them: the loader runs it first, to install the importer that finds them.
PARTS = ("protocol", "files", "store", "claim", "command", "venv", "record", "scripts", "wheel", "reuse",
         "status", "hooks", "release", "serve")
