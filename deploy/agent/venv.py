"""The venv of a release: `python -m venv --without-pip`, in the agent's own process, from a
template made once per interpreter; and where a venv installs what (its scheme)."""

from __future__ import annotations

import os
import shutil
import sys


def make_venv(venv: str, templates: str | None = None) -> None:
    """`python -m venv --without-pip VENV`, without starting another interpreter.

    With a templates folder, the venv module's output is made there once per interpreter and each
    later venv is a copy of it with the template's path replaced by its own: the same files, but
    without importing venv (and logging, subprocess …) in every release, most of a stage's CPU
    when only the app changed.
    """
    template = venv_template(templates) if templates else None
    if template is None:
        build_venv(venv)
    else:
        copy_venv(template, venv)


def build_venv(venv: str) -> None:
    import venv as venv_module

    venv_module.EnvBuilder(symlinks=os.name != "nt", with_pip=False).create(venv)


def venv_template(templates: str) -> str | None:
    """The venv module's venv for this interpreter, made under `templates` on first use; None
    where it cannot be made (the venv is then made directly)."""
    import hashlib
    base = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    key = hashlib.sha256(("%s\0%s" % (sys.version, base)).encode()).hexdigest()[:16]
    template = os.path.join(templates, "venv-" + key)
    if os.path.isfile(os.path.join(template, "origin")):
        return template
    partial = "%s.%d" % (template, os.getpid())
    try:
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        build_venv(os.path.join(partial, "venv"))
        with open(os.path.join(partial, "origin"), "w") as handle:
            handle.write(os.path.join(partial, "venv"))  # the path the venv module wrote into its files
        os.rename(partial, template)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        return template if os.path.isfile(os.path.join(template, "origin")) else None
    return template


def copy_venv(template: str, venv: str) -> None:
    """Copy a template venv to `venv`: links as links, files with the template's own path (in
    pyvenv.cfg's command and the activate scripts) replaced by the new one, modes kept."""
    with open(os.path.join(template, "origin")) as handle:
        origin = handle.read()
    source_root = os.path.join(template, "venv")
    old, new = origin.encode(), venv.encode()
    os.makedirs(venv)
    for folder, dirs, files in os.walk(source_root):
        target_folder = os.path.join(venv, os.path.relpath(folder, source_root))
        for name in list(dirs) + files:
            source, target = os.path.join(folder, name), os.path.join(target_folder, name)
            if os.path.islink(source):
                os.symlink(os.readlink(source).replace(origin, venv), target)
                if name in dirs:
                    dirs.remove(name)  # lib64 -> lib: a link, not a folder to copy
            elif name in dirs:
                os.mkdir(target)
            else:
                with open(source, "rb") as handle:
                    data = handle.read().replace(old, new)
                with open(target, "wb") as handle:
                    handle.write(data)
                os.chmod(target, os.stat(source).st_mode & 0o7777)


def venv_scheme(venv: str) -> dict[str, str]:
    """The venv's install folders, as its own interpreter (this one) would compute them."""
    import sysconfig
    scheme = "venv" if "venv" in sysconfig.get_scheme_names() else ("nt" if os.name == "nt" else "posix_prefix")
    base = {"base": venv, "platbase": venv, "installed_base": venv, "installed_platbase": venv}
    paths = sysconfig.get_paths(scheme, vars=base)
    return {key: paths[key] for key in ("purelib", "platlib", "scripts", "data")}


def scheme_paths(venv: str, scheme: dict[str, str], dist_name: str) -> dict[str, str]:
    # Where pip puts a venv's headers: sysconfig has no per-distribution folder for them.
    headers = os.path.join(venv, "include", "site", "python%d.%d" % sys.version_info[:2], dist_name)
    return dict(scheme, headers=headers)


def venv_python(venv: str) -> str:
    return os.path.join(venv, "Scripts" if os.name == "nt" else "bin", "python")


