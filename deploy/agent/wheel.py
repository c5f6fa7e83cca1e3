"""The wheel installer: a release's wheels installed into its venv in the agent's own process (the
agent runs on the interpreter the venv is made from, so files are compiled for it).

Like `python -m venv --without-pip` then `pip install --no-index --no-deps --require-hashes`,
without starting either: pip's start-up alone is about half a second of CPU, and a host paid it
twice per release (install, then `pip check`, which is now done once before any host is touched).

What it checks, and refuses with a message naming the wheel:
- the archive's sha256 is the one the manifest (and so the lock) gives, read from the same open
  file it installs from;
- every file in the archive is listed in its RECORD with the hash and size it has there (pip does
  not check this), by a hash the spec allows (sha256 or stronger, one hashlib guarantees);
- no path escapes its destination; no two wheels install the same file (launchers and files
  linked from the live release included); no wheel writes one file twice with different bytes;
- every console or GUI entry point names a function (`module:attr`), as pip requires.

It follows the wheel format (PEP 427 and the binary distribution format spec): the root goes to
purelib or platlib as WHEEL says, `<name>.data/<scheme>/` to that scheme's folder, `#!python`
scripts get the venv's interpreter, console and GUI entry points get launchers, and the
.dist-info gains INSTALLER, REQUESTED and a RECORD of what was really written, every file with its
sha256 (scripts, launchers and .pyc files included, where pip leaves .pyc rows without one): what
`invoke status` checks for drift, and what the next release checks before it links a file.

Shaped as the spec (and pypa/installer) is: a Source is one wheel, whose files come out only once
its sha256, WHEEL and RECORD vouch for them; a Destination is one venv's scheme, which writes them
and finalises the installed distribution (INSTALLER, REQUESTED, compiled files, RECORD).
"""

from __future__ import annotations

import os
import sys

from .files import digest_of, file_digest
from .protocol import Refused
from .record import record_form, record_matches, record_rows, row_of, write_record
from .scripts import entry_points, launcher, script_bytes
from .venv import scheme_paths, venv_python, venv_scheme

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host's every session an import; the annotations need none
    from typing import Any, BinaryIO
    from zipfile import ZipFile

    from .record import Row

# Other modules are imported where they are used: most calls of the agent (probe, lock, switch)
# install nothing, and importing them costs more than the call.

INSTALLER = "pinship"
SCHEMES = ("purelib", "platlib", "scripts", "headers", "data")


class Source:
    """One wheel, opened from the very file whose sha256 it checks: its .dist-info folder, its
    WHEEL fields and its RECORD, read before any file is handed out."""

    def __init__(self, handle: BinaryIO, filename: str, sha256: str) -> None:
        import zipfile

        found = file_digest(handle).hexdigest()
        if found != sha256:
            raise Refused("hash mismatch: expected sha256 %s, got %s" % (sha256, found))
        handle.seek(0)
        self.archive: ZipFile = zipfile.ZipFile(handle)
        self.info = self.dist_info_dir(filename)
        self.data_dir = self.info[: -len(".dist-info")] + ".data"
        self.root_is_purelib = self.read_wheel_file()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.archive.close()

    def dist_info_dir(self, filename: str) -> str:
        name, version = filename.split("-")[:2]
        wanted = ("%s-%s.dist-info" % (name, version)).lower()
        found = {n.split("/")[0] for n in self.archive.namelist() if n.split("/")[0].lower().endswith(".dist-info")}
        for folder in found:
            # The filename's name is escaped (- and . to _); the folder's may not be.
            if folder.lower().replace("-", "_").replace(".", "_") == wanted.replace("-", "_").replace(".", "_"):
                return folder
        raise Refused("no %s folder in the wheel" % wanted)

    def read_wheel_file(self) -> bool:
        """Whether the root goes to purelib, after WHEEL's version is one this installer reads."""
        fields = {}
        for line in self.archive.read(self.info + "/WHEEL").decode("utf-8").splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
        major = fields.get("wheel-version", "").split(".")[0]
        if major != "1":
            raise Refused("unsupported Wheel-Version %r" % fields.get("wheel-version"))
        return fields.get("root-is-purelib", "true").lower() == "true"

    def files(self) -> list[tuple[str, bytes, bool]]:
        """Every file in the archive (name, bytes, executable), each matching its RECORD line, each once."""
        record_name = self.info + "/RECORD"
        rows = record_rows(self.archive.read(record_name).decode("utf-8"))
        members, seen = [], set()
        for item in self.archive.infolist():
            name = item.filename
            if name.endswith("/") or name in (record_name, self.info + "/RECORD.jws", self.info + "/RECORD.p7s"):
                continue
            data = self.archive.read(item)
            row = rows.get(name)
            if row is None or not row[1]:
                raise Refused("%s is not in the wheel's RECORD with a hash" % name)
            if not record_matches(name, row[1], data):
                raise Refused("%s does not match the hash in the wheel's RECORD" % name)
            if row[2] and (not row[2].isdigit() or int(row[2]) != len(data)):
                raise Refused("%s does not match the size in the wheel's RECORD" % name)
            if name not in seen:  # a second entry of one name matched the same row: the same bytes
                seen.add(name)
                members.append((name, data, bool((item.external_attr >> 16) & 0o111)))
        return members

    def entry_points(self) -> list[tuple[str, str, str]]:
        """Its console and GUI entry points (name, module, attribute)."""
        points = self.info + "/entry_points.txt"
        if points not in self.archive.namelist():
            return []
        return entry_points(self.archive.read(points).decode("utf-8"))


def inside(folder: str, relative: str) -> str:
    target = os.path.normpath(os.path.join(folder, relative))
    if os.path.isabs(relative) or not (target + os.sep).startswith(os.path.normpath(folder) + os.sep):
        raise Refused("%s would be written outside %s" % (relative, folder))
    return target


class Destination:
    """One wheel's files going into a venv: where each goes by the venv's scheme, written to new
    inodes, never over a file another wheel (or the live release) holds; then finalised."""

    def __init__(self, venv: str, scheme: dict[str, str], claimed: dict[str, str], source: Source) -> None:
        self.paths = scheme_paths(venv, scheme, source.info.split("-")[0])
        self.python = venv_python(venv)
        self.claimed = claimed
        self.source = source
        self.site = self.paths["purelib"] if source.root_is_purelib else self.paths["platlib"]
        self.info_path = os.path.join(self.site, source.info)
        self.written: dict[str, Row] = {}
        self.modules: list[str] = []  # .py files in purelib or platlib, to compile

    def target(self, name: str) -> tuple[str, bool]:
        """Where one archive member goes, and whether it is a script from .data/scripts."""
        data_dir = self.source.data_dir
        if name.startswith(data_dir + "/"):
            parts = name[len(data_dir) + 1:].split("/", 1)
            if len(parts) != 2 or parts[0] not in SCHEMES:
                raise Refused("%s is in no known scheme folder" % name)
            return inside(self.paths[parts[0]], parts[1]), parts[0] == "scripts"
        return inside(self.site, name), False

    def write_file(self, name: str, data: bytes, executable: bool) -> None:
        target, is_script = self.target(name)
        if target in self.claimed:
            raise Refused("%s is also installed by %s" % (name, self.claimed[target]))
        mode = 0o755 if executable else 0o644
        if is_script:
            data, mode = script_bytes(data, self.python), 0o755
        self.fresh_write(target, data, mode)
        libraries = tuple(os.path.normpath(self.paths[key]) + os.sep for key in ("purelib", "platlib"))
        if target.endswith(".py") and target.startswith(libraries):
            self.modules.append(target)

    def write_launcher(self, name: str, module: str, attribute: str) -> None:
        target = inside(self.paths["scripts"], name)
        if target in self.claimed:
            raise Refused("its launcher %s is also installed by %s" % (name, self.claimed[target]))
        self.fresh_write(target, launcher(module, attribute, self.python), 0o755)

    def fresh_write(self, target: str, data: bytes, mode: int) -> None:
        """Write to a new inode: the venv may hold hard links shared with the live release."""
        if target in self.written:
            if self.written[target] == row_of(data):
                return  # the same bytes again: a file in the root and in .data/purelib, as pip allows
            raise Refused("%s is written twice by this wheel, with different contents" % target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            os.remove(target)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        self.written[target] = row_of(data)

    def claim(self, filename: str) -> None:
        """INSTALLER and REQUESTED (the wheel is named in the lock) in its .dist-info, replacing
        any the wheel ships, as pip does; then every file it wrote is the wheel's."""
        for name, data in (("INSTALLER", (INSTALLER + "\n").encode()), ("REQUESTED", b"")):
            self.written.pop(os.path.join(self.info_path, name), None)
            self.fresh_write(os.path.join(self.info_path, name), data, 0o644)
        for target in self.written:
            self.claimed[target] = filename

    def finalize(self) -> int:
        """Compile its modules, write its RECORD; how many files it holds."""
        import py_compile
        for target in sorted(set(self.modules)):
            try:
                compiled = py_compile.compile(target, doraise=True)
            except (py_compile.PyCompileError, SyntaxError, UnicodeDecodeError):
                continue  # as pip: a module that does not compile is installed, just not compiled
            if compiled:
                # Hashed like every other file (pip leaves .pyc rows without one): the next release
                # links it only if unchanged, and `status` reports an edited one, which runs as
                # surely as an edited .py.
                self.written[compiled] = (record_form(digest_of(compiled)), str(os.path.getsize(compiled)))
        write_record(self.site, self.info_path, self.written)
        return len(self.written)


def install_wheels(venv: str, wheels: list[dict[str, Any]]) -> int:
    """Install wheels ({"path", "sha256", "filename"}) into a venv; return how many files that wrote."""
    import zipfile
    files = 0
    scheme = venv_scheme(venv)
    claimed = installed_files(scheme)
    for wheel in wheels:
        try:
            files += install(venv, scheme, wheel, claimed)
        except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as exc:  # UnicodeDecodeError is a ValueError
            raise Refused("%s: %s: %s" % (wheel["filename"], type(exc).__name__, exc)) from None
        except NotImplementedError as exc:  # a compression this Python's zipfile lacks (the spec allows deflate)
            raise Refused("%s: cannot be unpacked by Python %d.%d on this host: %s" % (
                wheel["filename"], sys.version_info[0], sys.version_info[1], exc)) from None
        except Refused as exc:
            raise Refused("%s: %s" % (wheel["filename"], exc)) from None
    return files


def installed_files(scheme: dict[str, str]) -> dict[str, str]:
    """Every file the venv's installed distributions hold (those linked from the live release), by
    each one's RECORD: a wheel installed beside them may not write over one of them."""
    import csv
    import glob
    claimed = {}
    for site in sorted({scheme["purelib"], scheme["platlib"]}):
        for record in sorted(glob.glob(os.path.join(glob.escape(site), "*.dist-info", "RECORD"))):
            owner = "%s (linked from the live release)" % os.path.basename(os.path.dirname(record))
            try:
                with open(record, newline="", encoding="utf-8") as handle:
                    rows = list(csv.reader(handle))
            except (ValueError, csv.Error) as exc:  # read once already by plan_copy, so never expected
                raise Refused("cannot read %s: %s" % (record, exc)) from None
            for row in rows:
                if row:
                    claimed[os.path.normpath(os.path.join(site, row[0]))] = owner
    return claimed


def install(venv: str, scheme: dict[str, str], wheel: dict[str, Any], claimed: dict[str, str]) -> int:
    """Install one wheel; return how many files it wrote."""
    with open(wheel["path"], "rb") as handle, Source(handle, wheel["filename"], wheel["sha256"]) as source:
        destination = Destination(venv, scheme, claimed, source)
        for name, data, executable in source.files():
            destination.write_file(name, data, executable)
        for name, module, attribute in source.entry_points():
            destination.write_launcher(name, module, attribute)
        destination.claim(wheel["filename"])
    return destination.finalize()
