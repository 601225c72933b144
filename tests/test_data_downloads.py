"""The data_scripts' downloads, checksums and archive handling, offline: archives given
with ``--archive``, and real HTTP downloads from a ``http.server`` on loopback.

Faults covered (each test failed on the hand-written downloader it replaces): a damaged
first download had its hash recorded and the good file was then refused; a truncated
``.tar.gz`` died with a raw ``EOFError``; ``--archive`` only took the expected file
name; archive members could be links or climb out of the target folder; two URLs were
plain HTTP; CelebA's published md5s were not pinned or checked with ``--no-download``.
"""

from __future__ import annotations

import functools
import http.server
import importlib
import io
import json
import re
import stat
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE.parent / "data_scripts"
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(HERE / "fixtures"))
import releases as rel  # noqa: E402


def script(name: str):
    return importlib.import_module(name)


def _amazon(tmp_path: Path) -> Path:
    return rel.amazon(tmp_path / "download")[0]


def _run_amazon(out: Path, *argv: str) -> None:
    script("amazon_sentiment").main(["--out", str(out), "--protocols", "rating", *argv])


# ----------------------------------------------------------------------------- trust on first use

def test_damaged_first_download_is_not_recorded_and_the_good_file_is_then_accepted(tmp_path):
    good = _amazon(tmp_path)
    bad = tmp_path / "truncated.tar.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out = tmp_path / "data"
    with pytest.raises(SystemExit, match=r"damaged or incomplete.*Delete .* re-run.*--archive"):
        _run_amazon(out, "--archive", str(bad))
    book = out / "checksums.json"
    assert not book.exists() or "unprocessed.tar.gz" not in json.loads(book.read_text())
    assert not (out / "raw" / "amazon").exists()  # nothing half-extracted is left
    _run_amazon(out, "--archive", str(good))  # the correct file is accepted on retry
    assert json.loads(book.read_text())["unprocessed.tar.gz"] == rel.sha256(good)


def test_truncated_zip_says_what_to_do(tmp_path):
    counts = {"train": 1, "val": 1}
    good = rel.mtan(tmp_path, "nyuv2", (288, 384), rel.NYU_FOLDERS, counts)
    bad = tmp_path / "cut.zip"
    bad.write_bytes(good.read_bytes()[:-300])
    nyu = script("nyuv2")
    with pytest.raises(SystemExit, match=r"damaged or incomplete.*Delete"):
        nyu.main(["--out", str(tmp_path / "data"), "--archive", str(bad)])


def test_recorded_checksum_guards_later_runs(tmp_path):
    good = _amazon(tmp_path)
    out = tmp_path / "data"
    _run_amazon(out, "--archive", str(good))
    good.write_bytes(good.read_bytes() + b"\0")
    with pytest.raises(SystemExit, match="recorded in .*checksums.json"):
        _run_amazon(out, "--archive", str(good))


def test_no_published_checksum_prints_the_hash_and_says_so(tmp_path, capsys):
    good = _amazon(tmp_path)
    _run_amazon(tmp_path / "data", "--archive", str(good))
    text = capsys.readouterr().out
    assert rel.sha256(good) in text and "No checksum is published" in text
    assert "--expect-sha256" in text


def test_expect_sha256_pins_a_value_before_anything_is_extracted(tmp_path):
    good = _amazon(tmp_path)
    out = tmp_path / "data"
    with pytest.raises(SystemExit, match="--expect-sha256"):
        _run_amazon(out, "--archive", str(good), "--expect-sha256", "0" * 64)
    assert not (out / "raw" / "amazon").exists()
    _run_amazon(out, "--archive", str(good), "--expect-sha256", rel.sha256(good))
    assert not (out / "checksums.json").exists()  # checked against the pin, not recorded


def test_archive_accepts_any_file_name(tmp_path):
    good = _amazon(tmp_path)
    renamed = tmp_path / "my download (1).tgz"
    good.rename(renamed)
    _run_amazon(tmp_path / "data", "--archive", str(renamed))
    assert (tmp_path / "data" / "amazon_sentiment" / "MANIFEST.json").exists()


def test_archive_for_a_multi_file_script_needs_a_name(tmp_path):
    x = script("xtreme")
    f = tmp_path / "whatever.zip"
    f.write_bytes(b"x")
    with pytest.raises(SystemExit, match="which file is it"):
        x.main(["--out", str(tmp_path), "--archive", str(f)])


def test_published_checksum_is_checked_before_extraction(tmp_path):
    archive = rel.newsgroups(tmp_path / "download")
    out = tmp_path / "data"
    with pytest.raises(SystemExit, match="published sha256"):
        script("newsgroups").main(["--out", str(out), "--archive", str(archive)])
    assert not (out / "raw" / "20news").exists()


# ----------------------------------------------------------------------------- published values

def test_every_download_url_is_https():
    plain = []
    for path in sorted(SCRIPTS.glob("*.py")):
        for url in re.findall(r"""["'](\w+://[^"']+)""", path.read_text()):
            if not url.startswith("https://"):
                plain.append(f"{path.name}: {url}")
    assert not plain, plain


def test_published_checksums_are_pinned_as_the_libraries_publish_them():
    """Against torchvision's own lists (an independent copy of the published values)."""
    from torchvision.datasets import CelebA, FashionMNIST

    celeba = script("celeba")
    published = {f: m for _, m, f in CelebA.file_list}
    assert {f: md5 for f, (_, md5) in celeba.FILES.items()} == {
        f: published[f] for f in celeba.FILES}
    assert script("fashion_mnist").MD5 == dict(FashionMNIST.resources)
    # scikit-learn's ARCHIVE.checksum for 20news-bydate.tar.gz
    assert script("newsgroups").SHA256 == ("8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e1"
                                           "5c759fa66d95610")


def test_celeba_no_download_checks_the_published_md5s(tmp_path):
    files = rel.celeba(tmp_path / "download")
    given = [a for f, p in files.items() for a in ("--archive", f"{f}={p}")]
    with pytest.raises(SystemExit, match="published md5"):
        script("celeba").main(["--out", str(tmp_path / "data"), "--no-download", *given])


def test_celeba_no_download_names_a_missing_file(tmp_path):
    with pytest.raises(SystemExit, match="--no-download: img_align_celeba.zip is not in"):
        script("celeba").main(["--out", str(tmp_path / "data"), "--no-download"])


# ----------------------------------------------------------------------------- downloads

def test_missing_download_libraries_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pooch", None)
    monkeypatch.setitem(sys.modules, "gdown", None)
    out = str(tmp_path / "data")
    with pytest.raises(SystemExit, match=r"needs pooch.*pip install 'pooch==1.9.0'.*\[data\]"):
        _run_amazon(tmp_path / "data")
    with pytest.raises(SystemExit, match=r"needs gdown.*pip install .*'gdown==6.5.1'"):
        script("celeba").main(["--out", out])
    with pytest.raises(SystemExit, match=r"needs gdown"):
        script("office31").main(["--out", out])


def test_failed_download_says_how_to_continue(tmp_path, monkeypatch):
    c = script("_common")

    def offline(url, dest):
        raise OSError("network is unreachable")

    monkeypatch.setattr(c, "_pooch_get", offline)
    with pytest.raises(c.DownloadFailed, match="--archive unprocessed.tar.gz="):
        _run_amazon(tmp_path / "data")
    assert not list((tmp_path / "data" / "raw").rglob("unprocessed*"))  # nothing partial


def test_a_web_page_instead_of_the_file_is_refused(tmp_path, monkeypatch):
    def quota_page(url, dest):
        dest.write_text("<!DOCTYPE html><html><title>Google Drive - quota exceeded</title>")

    office = script("_office")
    monkeypatch.setattr(office, "gdown_get", quota_page)
    with pytest.raises(SystemExit, match="web page instead of the file"):
        office.prepare("doc", script("office31").RELEASE, ["--out", str(tmp_path)])
    assert not list(tmp_path.rglob("domain_adaptation_images*"))


def test_drive_links_carry_their_resource_keys(tmp_path, monkeypatch):
    urls = []

    def capture(url, dest):
        urls.append(url)
        raise OSError("offline")

    office = script("_office")
    monkeypatch.setattr(office, "gdown_get", capture)
    for name in ("office31", "office_home"):
        rel_ = script(name).RELEASE
        with pytest.raises(SystemExit, match="could not download"):
            office.prepare("doc", rel_, ["--out", str(tmp_path)])
        assert urls[-1].endswith(f"resourcekey={rel_.resource_key}") and rel_.drive_id in urls[-1]
    assert script("office31").RELEASE.resource_key == "0-gNMHVtZfRAyO_t2_WrOunA"
    assert script("office_home").RELEASE.resource_key == "0-2SNWq0CDAuWOBRRBL7ZZsw"


@pytest.fixture
def http_dir(tmp_path, monkeypatch):
    """A folder served over HTTP on 127.0.0.1 (a real download path, no internet)."""
    root = tmp_path / "served"
    root.mkdir()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_is_verified_before_it_is_kept(tmp_path, http_dir, monkeypatch):
    pytest.importorskip("pooch")
    root, base = http_dir
    files = rel.fashion(root)
    fm = script("fashion_mnist")
    monkeypatch.setattr(fm, "BASE", base)
    monkeypatch.setattr(fm, "MD5", {f: rel.md5(p) for f, p in files.items()})
    out = tmp_path / "fm"
    fm.main(["--out", str(out)])
    assert all((out / f).read_bytes() == p.read_bytes() for f, p in files.items())
    # the mirror now serves a damaged file: it is refused and nothing is kept
    victim = "t10k-labels-idx1-ubyte.gz"
    (out / victim).unlink()
    (root / victim).write_bytes(b"\x1f\x8b damaged")
    with pytest.raises(SystemExit, match="published md5.*nothing was kept"):
        fm.main(["--out", str(out)])
    assert not (out / victim).exists() and not list(out.rglob(f"*{victim}*"))


# ----------------------------------------------------------------------------- unsafe archives

def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as t:
        ok = tarfile.TarInfo("sorted_data/books/all.review")
        ok.size = 3
        t.addfile(ok, io.BytesIO(b"abc"))
        t.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = link
    m.size = 4 if kind == tarfile.REGTYPE else 0
    return m


TAR_CASES = {
    "dotdot": (_member("sorted_data/../../evil.txt"), "'..' component"),
    "absolute": (_member("/tmp/mtlkit-evil-abs.txt"), "absolute path"),
    "symlink": (_member("sorted_data/link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
    "inner_symlink": (_member("sorted_data/l2", tarfile.SYMTYPE, "books"), "symbolic link"),
    "hardlink": (_member("sorted_data/hard", tarfile.LNKTYPE, "sorted_data/books/all.review"),
                 "hard link"),
    "device": (_member("sorted_data/dev", tarfile.CHRTYPE), "device"),
    "fifo": (_member("sorted_data/fifo", tarfile.FIFOTYPE), "FIFO"),
}


@pytest.mark.parametrize("case", sorted(TAR_CASES))
def test_tar_members_outside_the_folder_or_links_are_refused(tmp_path, case):
    member, reason = TAR_CASES[case]
    archive = _tar_with(tmp_path / "crafted.tar.gz", member, b"evil")
    out = tmp_path / "data"
    with pytest.raises(SystemExit, match=rf"member .*{reason}.*refusing to extract anything"):
        _run_amazon(out, "--archive", str(archive))
    assert not (out / "raw" / "amazon").exists() and not (out / "raw" / "amazon.partial").exists()
    assert not (tmp_path / "evil.txt").exists() and not (out / "evil.txt").exists()
    assert not Path("/tmp/mtlkit-evil-abs.txt").exists()


def _zip_with(path: Path, name: str, data: bytes = b"evil", mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("sorted_data/books/all.review", b"abc")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.create_system = 3
            info.external_attr = mode << 16
        z.writestr(info, data)
    return path


ZIP_CASES = {
    "dotdot": ("sorted_data/../../evil.txt", None, "'..' component"),
    "backslash_dotdot": ("sorted_data\\..\\..\\evil.txt", None, "'..' component"),
    "absolute": ("/tmp/mtlkit-evil-abs.txt", None, "absolute path"),
    "drive": ("C:/evil.txt", None, "absolute path"),
    "symlink": ("sorted_data/link", stat.S_IFLNK | 0o777, "symbolic link"),
}


@pytest.mark.parametrize("case", sorted(ZIP_CASES))
def test_zip_members_outside_the_folder_or_links_are_refused(tmp_path, case):
    name, mode, reason = ZIP_CASES[case]
    archive = _zip_with(tmp_path / "crafted.zip", name, b"/etc/passwd", mode)
    out = tmp_path / "data"
    with pytest.raises(SystemExit, match=rf"member .*{reason}.*refusing to extract anything"):
        _run_amazon(out, "--archive", str(archive))
    assert not (out / "raw" / "amazon").exists()
    assert not (tmp_path / "evil.txt").exists() and not (out / "evil.txt").exists()
    assert not list(out.rglob("link"))
