"""RECORD, the list of a wheel's (and an installed distribution's) files with their hashes and
sizes: the hash forms the spec allows, reading a wheel's RECORD, writing an installed one."""

from __future__ import annotations

import os

from .protocol import Refused

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host's every session an import; the annotations need none
    from hashlib import _Hash as Hash

    Row = tuple[str, str]  # (hash in RECORD's form, size), of one file written

# What a wheel's RECORD may hash with: the spec allows any algorithm hashlib guarantees that is at
# least as strong as sha256 (so not md5, sha1 or sha224, nor the variable-length shake ones).
RECORD_ALGORITHMS = ("sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s")


def record_form(digest: Hash) -> str:
    """A digest as RECORD writes it: <algorithm>=<urlsafe base64, unpadded>."""
    import base64
    return digest.name + "=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def row_of(data: bytes) -> Row:
    """The RECORD row of `data` as the agent writes it: its sha256, its size."""
    import hashlib
    return record_form(hashlib.sha256(data)), str(len(data))


def record_matches(name: str, recorded: str, data: bytes) -> bool:
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


def record_rows(text: str) -> dict[str, list[str]]:
    """RECORD's rows by path. A path listed twice with the same hash and size is one file (pip and
    pypa/installer accept that too); listed with two different ones, RECORD contradicts itself."""
    import csv
    import io
    rows: dict[str, list[str]] = {}
    try:
        parsed = list(csv.reader(io.StringIO(text)))
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


def write_record(site: str, info_path: str, written: dict[str, Row]) -> None:
    """The installed distribution's RECORD: every file written, each with its hash and size."""
    import csv
    record = os.path.join(info_path, "RECORD")  # never in `written`: the wheel's own is not copied
    rows = [[os.path.relpath(target, site).replace(os.sep, "/"), digest, size]
            for target, (digest, size) in sorted(written.items())]
    rows.append([os.path.relpath(record, site).replace(os.sep, "/"), "", ""])
    with open(record, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
