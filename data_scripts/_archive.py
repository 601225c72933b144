"""Safe, all-or-nothing extraction of the downloaded archives (.zip, .tar, .tar.gz/bz2/xz).

Every member is checked before anything is written: an absolute path, a ``..`` component,
a symbolic or hard link, a device or FIFO refuses the whole archive (zip and tar alike).
A damaged or truncated archive stops with a message that says what to do instead of a
raw ``EOFError``.  Members are unpacked into ``<dest>.partial`` and renamed to ``dest``
only when all of them are out; only then is the archive's checksum recorded (trust on
first use).
"""

from __future__ import annotations

import json
import lzma
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from _common import BadFile, Fetched

STAMP = ".extracted.json"
_DRIVE = re.compile(r"^[A-Za-z]:")
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError,
                OSError, ValueError)


def unsafe_name(name: str) -> str | None:
    """Why a member name would escape the target folder, or None if it stays inside."""
    norm = name.replace("\\", "/")
    if not norm or norm.startswith("/") or _DRIVE.match(norm):
        return "has an absolute path"
    if ".." in PurePosixPath(norm).parts:
        return "has a '..' component that leaves the target folder"
    return None


def _is_root(name: str) -> bool:
    """A folder entry for the archive's root itself (``/`` in Dropbox's folder zips)."""
    return PurePosixPath(name.replace("\\", "/")).parts in ((), ("/",))


def tar_members(t: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """All members of ``t``, if every one is a regular file or folder with a safe name
    (an entry for the root folder itself is skipped)."""
    members = [m for m in t.getmembers() if not (m.isdir() and _is_root(m.name))]
    for m in members:
        kind = ("a symbolic link" if m.issym() else "a hard link" if m.islnk() else
                "a device file" if (m.ischr() or m.isblk()) else "a FIFO" if m.isfifo() else
                None if (m.isreg() or m.isdir()) else "not a regular file")
        _refuse_if(m.name, unsafe_name(m.name) or (f"is {kind}" if kind else None))
    return members


def zip_members(z: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """All members of ``z``, if every one is a regular file or folder with a safe name
    (an entry for the root folder itself is skipped)."""
    members = [m for m in z.infolist() if not (m.is_dir() and _is_root(m.filename))]
    for m in members:
        mode = m.external_attr >> 16
        kind = None
        if stat.S_ISLNK(mode):
            kind = "is a symbolic link"
        elif mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            kind = "is not a regular file"
        _refuse_if(m.filename, unsafe_name(m.filename) or kind)
    return members


class UnsafeMember(ValueError):
    """An archive member that would land outside the target folder or is not a file."""


def _refuse_if(name: str, reason: str | None) -> None:
    if reason:
        raise UnsafeMember(f"member {name!r} {reason}")


def extract(fetched: Fetched, dest: Path) -> Path:
    """Unpack ``fetched`` into ``dest`` (skipped if ``dest`` already holds exactly this
    archive), then record its checksum if it had none to check."""
    stamp = dest / STAMP
    if stamp.exists() and _stamp_of(stamp) == fetched.sha256:
        fetched.confirm()
        return dest
    part = dest.with_name(dest.name + ".partial")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    print(f"extracting {fetched.path.name}")
    try:
        _unpack(fetched.path, part)
    except UnsafeMember as err:
        shutil.rmtree(part, ignore_errors=True)
        raise BadFile(f"{fetched.path}: {err}; refusing to extract anything from it. It is "
                      f"not the published {fetched.name}: {_what_to_do(fetched)}") from None
    except _READ_ERRORS as err:
        shutil.rmtree(part, ignore_errors=True)
        detail = " ".join(str(err).split())
        raise BadFile(f"{fetched.path} is damaged or incomplete ({type(err).__name__}: "
                      f"{detail}). {_what_to_do(fetched)}") from None
    (part / STAMP).write_text(json.dumps({"archive": fetched.name, "sha256": fetched.sha256}))
    shutil.rmtree(dest, ignore_errors=True)
    part.rename(dest)
    fetched.confirm()
    return dest


def _stamp_of(stamp: Path) -> str | None:
    try:
        return json.loads(stamp.read_text()).get("sha256")
    except (ValueError, AttributeError, OSError):
        return None


def _what_to_do(fetched: Fetched) -> str:
    return (f"Delete {fetched.path} and re-run to download it again, or pass "
            f"--archive {fetched.name}=/path/to/a/good/copy.")


def _unpack(archive: Path, into: Path) -> None:
    with open(archive, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if is_zip or zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for m in zip_members(z):
                z.extract(m, into)
        return
    with tarfile.open(archive) as t:
        members = tar_members(t)
        t.extractall(into, members=members, filter="data")
