"""Host side, the first thing run: compile the agent, or load it compiled by an earlier run.

The loader (targets.LOADER) executes this with the first request, which carries the agent's
source and its sha256. Compiling the 40 kB agent costs a host more CPU than most steps, so the
code object is kept under the deploy path, named by the source's digest and the interpreter's
version: a changed agent or Python gets its own file, and an unreadable one is compiled again.
Code is loaded only from a real directory and file of the user the agent runs as (never through a
link): loading code is running it. Stdlib only, any Python 3.8+.
"""

import marshal
import os
import stat
import sys


def ours(path, directory):
    """Whether `path` is a real directory (or file) of this user, examined without following links."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    kind = stat.S_ISDIR if directory else stat.S_ISREG
    return kind(info.st_mode) and info.st_uid == os.geteuid()


def load_cached(folder, cached):
    if not ours(folder, True):
        return None
    try:
        descriptor = os.open(cached, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return None
        try:
            return marshal.load(handle)  # noqa: S302 (this user's own file: whoever could forge it runs as this user anyway)
        except (EOFError, ValueError, TypeError):
            return None


def agent_code(request):
    source, digest = request.pop("source"), request.pop("digest")
    folder = os.path.join(request["path"], ".agent")
    cached = os.path.join(folder, "code-%s-%x.bin" % (digest[:32], sys.hexversion))
    code = load_cached(folder, cached)
    if code is not None:
        return code
    code = compile(source, "pinship-agent", "exec")
    # Never create the deploy path just to cache in it, nor write through a link or into a
    # folder of another user.
    plain = len(digest) >= 32 and all(char in "0123456789abcdef" for char in digest[:32])
    if plain and os.path.isdir(request["path"]) and (not os.path.lexists(folder) or ours(folder, True)):
        partial = "%s.%d" % (cached, os.getpid())
        try:
            if not os.path.lexists(folder):
                os.mkdir(folder)
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
