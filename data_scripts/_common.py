"""Shared command line, downloads, checksums and staging for the data_scripts.

Checksums, from most to least trusted, all checked BEFORE anything is extracted or read:

1. *published*: the value the dataset (or a library that ships it, e.g. torchvision or
   scikit-learn) publishes, pinned in the script;
2. *pinned by you*: ``--expect-sha256 [NAME=]HEX`` for a file whose hash you got from a
   source you trust;
3. *recorded*: where nothing is published, the sha256 is printed and written to
   ``<out>/checksums.json`` (trust on first use), but only once the file has been
   extracted or prepared successfully, so a damaged first download is never recorded;
   later runs check against the record.

Downloads go through pooch (HTTP(S)) or gdown (Google Drive), the optional ``data`` extra
(``pip install -e '.[data]'``), into a temporary file that is kept only after it passed
every expected checksum.  ``--archive [NAME=]FILE`` uses a file you downloaded by hand
(any file name).  Prepared layouts are built in a fresh staging folder and replace the old
one only when complete (:func:`staged`), so files of earlier runs never mix in; each gets
a ``MANIFEST.json`` that the ``mtlkit.data`` loader verifies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from mtlkit.data.common import sha256_file as sha256  # noqa: E402  (after the path set-up)

INSTALL = "pip install 'pooch==1.9.0' 'gdown==6.5.1'  (in a checkout: pip install -e '.[data]')"
BOOK = "checksums.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class DownloadFailed(SystemExit):
    """A download did not complete; the message says how to continue by hand."""


class BadFile(SystemExit):
    """A file fails an expected checksum, or an archive is damaged or unsafe."""


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- command line

def parser(description: str, files: Sequence[str], main: str | None = None
           ) -> argparse.ArgumentParser:
    """The common options; ``files`` are the names of the files the script downloads
    (what ``--archive NAME=FILE`` and ``--expect-sha256 NAME=HEX`` may name); ``main``
    (default: the only file) is the one a bare ``--archive FILE`` of any name stands for."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / ".data",
                   help="data root (default: <repo>/.data, the loaders' default)")
    p.add_argument("--raw", type=Path, default=None,
                   help="where downloads go (default: <out>/raw)")
    p.add_argument("--archive", action="append", default=[], metavar="[NAME=]FILE",
                   help="use a file you downloaded by hand, under any file name (repeatable; "
                        f"NAME is one of: {', '.join(files)})")
    p.add_argument("--expect-sha256", action="append", default=[], metavar="[NAME=]HEX",
                   help="refuse the file unless its sha256 is HEX (a value you trust)")
    p.set_defaults(_files=list(files), _main=main or (files[0] if len(files) == 1 else None))
    return p


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` and resolve ``--archive`` / ``--expect-sha256`` to file names."""
    args = p.parse_args(argv)
    files, main = args._files, args._main
    args.given = {k: Path(v).expanduser() for k, v in _named(args.archive, files, main,
                                                             "--archive", lambda v: Path(v).name)}
    for name, path in args.given.items():
        if not path.is_file():
            p.error(f"--archive {path}: no such file (given for {name})")
    args.pins = dict(_named(args.expect_sha256, files, main, "--expect-sha256", lambda v: None))
    for name, hexa in args.pins.items():
        if not _HEX64.fullmatch(hexa.lower()):
            p.error(f"--expect-sha256 {name}={hexa}: not 64 hexadecimal digits")
        args.pins[name] = hexa.lower()
    args.raw = args.raw or args.out / "raw"
    return args


def _named(values: list[str], files: list[str], main: str | None, flag: str,
           implied: Callable[[str], str | None]) -> list[tuple[str, str]]:
    """``NAME=VALUE`` or a bare ``VALUE`` (its file name, or the script's main file)."""
    out = []
    for v in values:
        key, sep, rest = v.partition("=")
        if sep and key in files:
            out.append((key, rest))
        elif implied(v) in files:
            out.append((implied(v), v))
        elif main is not None:
            out.append((main, v))
        else:
            raise SystemExit(f"{flag} {v}: which file is it? Write NAME={v} with NAME one "
                             f"of: {', '.join(files)}")
    return out


# ----------------------------------------------------------------------------- checksums

@dataclass(frozen=True)
class Fetched:
    """A file that passed every expected checksum.  ``book`` is set when nothing was
    expected: :meth:`confirm` records the sha256 there once the file has proved good."""

    path: Path
    name: str
    sha256: str
    book: Path | None = None

    def confirm(self) -> None:
        """Record the sha256 (trust on first use); call once extraction/parsing succeeded."""
        if self.book is None:
            return
        record = _read_book(self.book)
        record[self.name] = self.sha256
        self.book.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.book.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(tmp, self.book)
        print(f"  sha256 of {self.name} recorded in {self.book}: {self.sha256}")


def _read_book(book: Path) -> dict[str, str]:
    if not book.exists():
        return {}
    try:
        record = json.loads(book.read_text())
    except ValueError:
        raise BadFile(f"{book} is not valid JSON; fix or delete it (it only holds the "
                      "sha256 values recorded on first download)") from None
    return record if isinstance(record, dict) else {}


def expectations(name: str, args: argparse.Namespace, sha: str | None,
                 md5sum: str | None) -> list[tuple[str, str, str]]:
    """``(algorithm, hex, where it comes from)`` for every value ``name`` must match."""
    out = []
    if sha:
        out.append(("sha256", sha, "the published sha256"))
    if md5sum:
        out.append(("md5", md5sum, "the published md5"))
    if name in args.pins:
        out.append(("sha256", args.pins[name], "the sha256 given with --expect-sha256"))
    recorded = _read_book(args.out / BOOK).get(name)
    if recorded:
        out.append(("sha256", recorded, f"the sha256 recorded in {args.out / BOOK} when the "
                                        "file was first prepared"))
    return out


def mismatch(path: Path, expected: list[tuple[str, str, str]], digest: str) -> str | None:
    """A sentence naming the first expected value ``path`` (sha256 ``digest``) fails."""
    got = {"sha256": digest}
    for algo, want, origin in expected:
        if algo not in got:
            got[algo] = md5(path)
        if got[algo] != want:
            return f"its {algo} is {got[algo]}, but {origin} is {want}"
    return None


# ----------------------------------------------------------------------------- downloads

def fetch(url: str, name: str, args: argparse.Namespace, sha256_hex: str | None = None,
          md5_hex: str | None = None, get: Callable[[str, Path], None] | None = None,
          how: str = "") -> Fetched:
    """``<raw>/<name>`` (or the ``--archive`` given for it), downloaded from ``url`` if
    missing, checked against every expected checksum before it is returned.

    ``get(url, dest)`` downloads (default: pooch over HTTP(S)); ``how`` tells a user how to
    get the file by hand when the download fails."""
    given = args.given.get(name)
    path = given or args.raw / name
    expected = expectations(name, args, sha256_hex, md5_hex)
    if not path.exists():
        digest = _download(url, path, expected, get or _pooch_get, how)
    elif problem := mismatch(path, expected, digest := sha256(path)):
        if given:
            raise BadFile(f"--archive {path}: {problem}. This is not the expected {name}; "
                          "pass a good copy.")
        raise BadFile(f"{path}: {problem}. Delete {path} and re-run to download it again, or "
                      f"pass --archive with a good copy. {_tofu_hint(expected, name, args)}")
    if expected:
        print(f"  {name}: checked against {expected[0][2]}")
        return Fetched(path, name, digest)
    print(f"  {name}: sha256 {digest}\n    No checksum is published for this file: the value "
          f"is recorded in {args.out / BOOK} once the file has been prepared, and later runs "
          f"check against it. To pin a value you trust, pass --expect-sha256 {name}=<sha256>.")
    return Fetched(path, name, digest, args.out / BOOK)


def _tofu_hint(expected, name: str, args) -> str:
    if expected and expected[-1][2].startswith("the sha256 recorded"):
        return (f"If the upstream file really changed, delete the entry {name!r} from "
                f"{args.out / BOOK}.")
    return ""


def _download(url: str, dest: Path, expected, get, how: str) -> str:
    """Download into ``<dest dir>/.partial/``, check, move into place; its sha256."""
    part = dest.parent / ".partial" / dest.name
    part.unlink(missing_ok=True)
    part.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {url}")
    try:
        get(url, part)
    except DownloadFailed:
        part.unlink(missing_ok=True)
        raise
    except Exception as err:  # requests/urllib3/gdown errors, timeouts, refused connections
        part.unlink(missing_ok=True)
        raise DownloadFailed(
            f"could not download {url} ({type(err).__name__}: {err}). Check the connection, "
            f"or {how or 'download the file by hand'} and pass --archive "
            f"{dest.name}=/path/to/file") from None
    if not part.is_file():
        raise DownloadFailed(f"the download of {url} produced no file; "
                             f"{how or 'download it by hand'} and pass --archive "
                             f"{dest.name}=/path/to/file")
    if _is_web_page(part):
        part.unlink()
        raise DownloadFailed(
            f"{url} returned a web page instead of the file (a quota, login or moved-file "
            f"page). {how or 'Download it by hand'} and pass --archive "
            f"{dest.name}=/path/to/file")
    if problem := mismatch(part, expected, digest := sha256(part)):
        part.unlink()
        raise BadFile(f"the file downloaded from {url}: {problem}. It is damaged or not the "
                      "expected file; nothing was kept. Retry, or get the file from a source "
                      f"you trust and pass --archive {dest.name}=/path/to/file")
    os.replace(part, dest)
    return digest


def _is_web_page(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _pooch_get(url: str, dest: Path) -> None:
    """HTTP(S) download with pooch: streamed to a temporary file, moved to ``dest``."""
    try:
        import pooch
    except ImportError:
        raise DownloadFailed(f"downloading {url} needs pooch, which is not installed. "
                             f"Install the data-script extras: {INSTALL}") from None
    downloader = pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=60,
                                      headers={"User-Agent": "mtlkit-data-scripts"})
    pooch.retrieve(url, None, fname=dest.name, path=dest.parent, downloader=downloader)


def drive_url(file_id: str, resource_key: str | None = None) -> str:
    """The direct-download address of a Google Drive file (old links need their
    ``resourcekey``, which gdown's own id handling drops)."""
    if resource_key is None:
        return f"https://drive.google.com/uc?id={file_id}"
    return (f"https://drive.usercontent.google.com/download?id={file_id}&export=download"
            f"&confirm=t&resourcekey={resource_key}")


def gdown_get(url: str, dest: Path) -> None:
    """Google Drive download with gdown (it handles Drive's confirmation pages)."""
    try:
        import gdown
    except ImportError:
        raise DownloadFailed(f"downloading from Google Drive needs gdown, which is not "
                             f"installed. Install the data-script extras: {INSTALL}") from None
    if gdown.download(url=url, output=str(dest), quiet=False) is None:
        raise DownloadFailed(f"gdown could not download {url}")


# ----------------------------------------------------------------------------- staging

@contextmanager
def staged(out: Path, name: str) -> Iterator[Path]:
    """Yield a fresh root to write ``<root>/<name>`` into; on success it replaces
    ``<out>/<name>`` as a whole (nothing of an earlier run survives), on error it is
    removed and ``<out>/<name>`` is left as it was."""
    root = out / f".{name}.staging"
    shutil.rmtree(root, ignore_errors=True)
    (root / name).mkdir(parents=True)
    try:
        yield root
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    final, old = out / name, out / f".{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    (root / name).rename(final)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)


def expect_count(what: str, got: int, want: int) -> None:
    """A prepared split must have exactly the published number of files."""
    if got != want:
        raise BadFile(f"{what}: {got} files, the release has {want}. The archive is "
                      "incomplete or not the expected release; nothing was written. Delete "
                      "the downloaded file and re-run, or pass --archive with a good copy.")
