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
"""

from __future__ import annotations

import os
import sys

from .files import digest_of, file_digest
from .protocol import Refused
from .scripts import entry_points, launcher, script_bytes
from .venv import scheme_paths, venv_python, venv_scheme

# Other modules are imported where they are used: most calls of the agent (probe, lock, switch)
# install nothing, and importing them costs more than the call.

INSTALLER = "pinship"


SCHEMES = ("purelib", "platlib", "scripts", "headers", "data")


def record_form(digest):
    """A digest as RECORD writes it: <algorithm>=<urlsafe base64, unpadded>."""
    import base64
    return digest.name + "=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def urlsafe_hash(data):
    import hashlib
    return record_form(hashlib.sha256(data))


# What a wheel's RECORD may hash with: the spec allows any algorithm hashlib guarantees that is at
# least as strong as sha256 (so not md5, sha1 or sha224, nor the variable-length shake ones).
RECORD_ALGORITHMS = ("sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s")


def record_matches(name, recorded, data):
    """Whether `data` has the hash RECORD gives it; a hash the spec does not allow is refused."""
    import hashlib
    algorithm, _, value = recorded.partition("=")
    if algorithm not in RECORD_ALGORITHMS:
        weak = algorithm in ("md5", "sha1", "sha224") or algorithm.startswith("shake_")
        raise Refused("%s is hashed with %s in the wheel's RECORD, which the wheel spec does not allow (%s); "
                      "rebuild the wheel with a current build tool" % (
                          name, ascii(algorithm)[1:-1] or "nothing",
                          "weaker than sha256" if weak else "use one of " + ", ".join(RECORD_ALGORITHMS)))
    return record_form(hashlib.new(algorithm, data)) == algorithm + "=" + value.rstrip("=")


def verify_open_file(handle, sha256):
    """Hash the very file object the wheel will be read from, then rewind it."""
    found = file_digest(handle).hexdigest()
    if found != sha256:
        raise Refused("hash mismatch: expected sha256 %s, got %s" % (sha256, found))
    handle.seek(0)


def dist_info_dir(archive, filename):
    name, version = filename.split("-")[:2]
    wanted = ("%s-%s.dist-info" % (name, version)).lower()
    found = {n.split("/")[0] for n in archive.namelist() if n.split("/")[0].lower().endswith(".dist-info")}
    for folder in found:
        # The filename's name is escaped (- and . to _); the folder's may not be.
        if folder.lower().replace("-", "_").replace(".", "_") == wanted.replace("-", "_").replace(".", "_"):
            return folder
    raise Refused("no %s folder in the wheel" % wanted)


def read_wheel_file(archive, info):
    fields = {}
    for line in archive.read(info + "/WHEEL").decode("utf-8").splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
    major = fields.get("wheel-version", "").split(".")[0]
    if major != "1":
        raise Refused("unsupported Wheel-Version %r" % fields.get("wheel-version"))
    return fields.get("root-is-purelib", "true").lower() == "true"


def record_rows(archive, record_name):
    """RECORD's rows by path. A path listed twice with the same hash and size is one file (pip and
    pypa/installer accept that too); listed with two different ones, RECORD contradicts itself."""
    import csv
    import io
    rows = {}
    try:
        parsed = list(csv.reader(io.StringIO(archive.read(record_name).decode("utf-8"))))
    except csv.Error as exc:  # a NUL byte (before Python 3.11), a field past csv's size limit
        raise Refused("the wheel's RECORD cannot be read as CSV: %s" % exc) from None
    for row in parsed:
        if not row:
            continue
        row = [*row, "", ""][:3]
        if rows.get(row[0], row) != row:
            raise Refused("%s is listed twice in the wheel's RECORD, with different hashes or sizes" % row[0])
        rows[row[0]] = row
    return rows


def checked_members(archive, info):
    """Every file in the archive with its bytes, each matching its RECORD line, each once."""
    record_name = info + "/RECORD"
    rows = record_rows(archive, record_name)
    members, seen = [], set()
    for item in archive.infolist():
        name = item.filename
        if name.endswith("/") or name in (record_name, info + "/RECORD.jws", info + "/RECORD.p7s"):
            continue
        data = archive.read(item)
        row = rows.get(name)
        if row is None or not row[1]:
            raise Refused("%s is not in the wheel's RECORD with a hash" % name)
        if not record_matches(name, row[1], data):
            raise Refused("%s does not match the hash in the wheel's RECORD" % name)
        if row[2] and (not row[2].isdigit() or int(row[2]) != len(data)):
            raise Refused("%s does not match the size in the wheel's RECORD" % name)
        if name not in seen:  # a second entry of one name matched the same row: the same bytes
            seen.add(name)
            members.append((name, data, item))
    return members


def inside(folder, relative):
    target = os.path.normpath(os.path.join(folder, relative))
    if os.path.isabs(relative) or not (target + os.sep).startswith(os.path.normpath(folder) + os.sep):
        raise Refused("%s would be written outside %s" % (relative, folder))
    return target


def destination(name, root_is_purelib, data_dir, paths):
    """Where one archive member goes, and whether it is a script from .data/scripts."""
    if name.startswith(data_dir + "/"):
        parts = name[len(data_dir) + 1:].split("/", 1)
        if len(parts) != 2 or parts[0] not in SCHEMES:
            raise Refused("%s is in no known scheme folder" % name)
        return inside(paths[parts[0]], parts[1]), parts[0] == "scripts"
    root = paths["purelib"] if root_is_purelib else paths["platlib"]
    return inside(root, name), False


def fresh_write(target, data, mode, written):
    """Write to a new inode: the venv may hold hard links shared with the live release."""
    if target in written:
        if written[target] == (urlsafe_hash(data), str(len(data))):
            return  # the same bytes again: a file in the root and in .data/purelib, as pip allows
        raise Refused("%s is written twice by this wheel, with different contents" % target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.lexists(target):
        os.remove(target)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    written[target] = (urlsafe_hash(data), str(len(data)))


def compile_sources(targets, written):
    import py_compile
    for target in sorted(set(targets)):
        try:
            compiled = py_compile.compile(target, doraise=True)
        except (py_compile.PyCompileError, SyntaxError, UnicodeDecodeError):
            continue  # as pip: a module that does not compile is installed, just not compiled
        if compiled:
            # Hashed like every other file (pip leaves .pyc rows without one): the next release
            # links it only if unchanged, and `status` reports an edited one, which runs as surely
            # as an edited .py.
            written[compiled] = (record_form(digest_of(compiled)), str(os.path.getsize(compiled)))


def write_record(site, info_path, written):
    import csv
    record = os.path.join(info_path, "RECORD")  # never in `written`: the wheel's own is not copied
    rows = [[os.path.relpath(target, site).replace(os.sep, "/"), digest, size]
            for target, (digest, size) in sorted(written.items())]
    rows.append([os.path.relpath(record, site).replace(os.sep, "/"), "", ""])
    with open(record, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def install_wheels(venv, wheels):
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


def installed_files(scheme):
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


def install(venv, scheme, wheel, claimed):
    """Install one wheel; return how many files it wrote."""
    import zipfile
    with open(wheel["path"], "rb") as handle:
        verify_open_file(handle, wheel["sha256"])
        with zipfile.ZipFile(handle) as archive:
            written, sources, site, info_path = unpack(venv, scheme, archive, wheel, claimed)
    compile_sources(sources, written)
    write_record(site, info_path, written)
    return len(written)


def unpack(venv, scheme, archive, wheel, claimed):
    info = dist_info_dir(archive, wheel["filename"])
    root_is_purelib = read_wheel_file(archive, info)
    members = checked_members(archive, info)
    data_dir = info[: -len(".dist-info")] + ".data"
    paths = scheme_paths(venv, scheme, info.split("-")[0])
    python = venv_python(venv)
    site = paths["purelib"] if root_is_purelib else paths["platlib"]
    libraries = tuple(os.path.normpath(paths[key]) + os.sep for key in ("purelib", "platlib"))
    written, sources = {}, []
    for name, data, item in members:
        target, is_script = destination(name, root_is_purelib, data_dir, paths)
        if target in claimed:
            raise Refused("%s is also installed by %s" % (name, claimed[target]))
        mode = 0o644
        if is_script:
            data, mode = script_bytes(data, python), 0o755
        elif (item.external_attr >> 16) & 0o111:
            mode = 0o755
        fresh_write(target, data, mode, written)
        if target.endswith(".py") and target.startswith(libraries):
            sources.append(target)
    points = info + "/entry_points.txt"
    if points in archive.namelist():
        for name, module, attribute in entry_points(archive.read(points).decode("utf-8")):
            target = inside(paths["scripts"], name)
            if target in claimed:
                raise Refused("its launcher %s is also installed by %s" % (name, claimed[target]))
            fresh_write(target, launcher(module, attribute, python), 0o755, written)
    info_path = os.path.join(site, info)
    for name, data in (("INSTALLER", (INSTALLER + "\n").encode()), ("REQUESTED", b"")):  # REQUESTED: named in the lock
        written.pop(os.path.join(info_path, name), None)  # one a wheel ships is replaced, as pip replaces it
        fresh_write(os.path.join(info_path, name), data, 0o644, written)
    for target in written:
        claimed[target] = wheel["filename"]
    return written, sources, site, info_path


