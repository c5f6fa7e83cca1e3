"""Host side, the first thing run: compile the agent, or load it compiled by an earlier run.

The loader (targets.LOADER) executes this with the first request, which carries the agent's
source and its sha256. Compiling the 40 kB agent costs a host more CPU than most steps, so the
code object is kept under the deploy path, named by the source's digest and the interpreter's
version: a changed agent or Python gets its own file, and an unreadable one is compiled again.
Stdlib only, any Python 3.8+.
"""

import marshal
import os
import sys


def agent_code(request):
    source, digest = request.pop("source"), request.pop("digest")
    folder = os.path.join(request["path"], ".agent")
    cached = os.path.join(folder, "code-%s-%x.bin" % (digest[:32], sys.hexversion))
    try:
        with open(cached, "rb") as handle:
            return marshal.load(handle)  # noqa: S302 (written by this code in the deploy path, which whoever could forge it controls anyway)
    except (OSError, EOFError, ValueError, TypeError):
        pass
    code = compile(source, "pinship-agent", "exec")
    if os.path.isdir(request["path"]):  # never create the deploy path just to cache in it
        partial = "%s.%d" % (cached, os.getpid())
        try:
            os.makedirs(folder, exist_ok=True)
            with open(partial, "wb") as handle:
                marshal.dump(code, handle)
            os.replace(partial, cached)
            for name in os.listdir(folder):  # other agents' code: from older versions of pinship
                if name.startswith("code-") and name != os.path.basename(cached):
                    os.remove(os.path.join(folder, name))
        except OSError:
            pass
    return code


if __name__ == "__agent__":  # run by the loader, which passes the first request as REQUEST
    exec(agent_code(REQUEST), {"__name__": "__agent__", "REQUEST": REQUEST})  # noqa: F821,S102
