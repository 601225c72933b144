"""Shared download / checksum / extraction helpers for the data_scripts.

Checksums: where the sha256 of an archive is published or known, the script states it
(``KNOWN``) and every download is checked against it.  Where it is not known offline, the
first download records the sha256 in ``<out>/checksums.json`` (trust on first use) and
every later run checks against that record; the script says which applies.  After
preparing a layout each script writes ``MANIFEST.json`` (sha256 of every prepared file),
which the ``mtlkit.data`` loader verifies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))


class DownloadFailed(SystemExit):
    """A download did not complete; the message says how to continue by hand."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, default=REPO / ".data",
                   help="data root (default: <repo>/.data, the loaders' default)")
    p.add_argument("--raw", type=Path, default=None,
                   help="where downloads go (default: <out>/raw)")
    p.add_argument("--archive", type=Path, action="append", default=[],
                   help="use an already downloaded file instead of fetching it (repeatable)")
    return p


def check_or_record(path: Path, out: Path, name: str, known: str | None) -> None:
    """Verify ``path`` against ``known`` or against / into ``out/checksums.json``."""
    digest = sha256(path)
    if known is not None:
        if digest != known:
            raise SystemExit(f"{path}: sha256 {digest} != published {known}; the download "
                             "is corrupt or the file changed upstream. Delete it and retry.")
        print(f"  sha256 ok (published): {name}")
        return
    book = out / "checksums.json"
    record = json.loads(book.read_text()) if book.exists() else {}
    if name in record and record[name] != digest:
        raise SystemExit(f"{path}: sha256 {digest} differs from the one recorded on first "
                         f"download ({record[name]}) in {book}. Delete the file and retry, or "
                         "delete the record if the upstream file really changed.")
    if name not in record:
        record[name] = digest
        book.parent.mkdir(parents=True, exist_ok=True)
        book.write_text(json.dumps(record, indent=1, sort_keys=True))
        print(f"  sha256 recorded on first download (no published value): {name} {digest}")
    else:
        print(f"  sha256 ok (recorded): {name}")


def fetch(url: str, name: str, args: argparse.Namespace, known: str | None = None) -> Path:
    """Download ``url`` to ``<raw>/<name>`` (or take it from ``--archive``) and check it."""
    raw = args.raw or args.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    given = [a for a in args.archive if a.name == name]
    dest = given[0] if given else raw / name
    if not dest.exists():
        print(f"downloading {url}")
        tmp = dest.with_suffix(dest.suffix + ".part")
        req = urllib.request.Request(url, headers={"User-Agent": "mtlkit-data-scripts"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
        except OSError as err:  # URLError, timeouts, refused connections
            tmp.unlink(missing_ok=True)
            raise DownloadFailed(
                f"could not download {url} ({err}). Check the connection, or download "
                f"the file by hand and pass --archive /path/to/{name}") from None
        tmp.replace(dest)
    check_or_record(dest, args.out, name, known)
    return dest


def extract(archive: Path, dest: Path) -> Path:
    """Unpack a .zip / .tar(.gz|.bz2|.xz) archive into ``dest`` (idempotent)."""
    stamp = dest / f".extracted-{archive.name}"
    if stamp.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    print(f"extracting {archive.name}")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
    else:
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")
    stamp.touch()
    return dest
