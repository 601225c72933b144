"""The data_scripts' parsing and checksum logic, run offline on tiny raw inputs; for
20 Newsgroups and Amazon the whole script runs on a fake archive (``--archive``) and the
loader reads what it wrote."""

from __future__ import annotations

import importlib
import io
import sys
import tarfile
from pathlib import Path

import pytest

from mtlkit.data import registry

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"
sys.path.insert(0, str(SCRIPTS))


def _script(name: str):
    return importlib.import_module(name)


def _tar(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, body in files.items():
            data = body.encode("latin-1")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_checksum_trust_on_first_use(tmp_path):
    c = _script("_common")
    f = tmp_path / "a.bin"
    f.write_bytes(b"hello")
    c.check_or_record(f, tmp_path, "a.bin", None)  # records
    assert "a.bin" in (tmp_path / "checksums.json").read_text()
    c.check_or_record(f, tmp_path, "a.bin", None)  # verifies
    f.write_bytes(b"hellO")
    with pytest.raises(SystemExit, match="recorded on first download"):
        c.check_or_record(f, tmp_path, "a.bin", None)
    with pytest.raises(SystemExit, match="published"):
        c.check_or_record(f, tmp_path, "a.bin", "0" * 64)


def test_amazon_review_parser():
    amazon = _script("amazon_sentiment")
    raw = ("<review>\n<rating>\n5.0\n</rating>\n<title>\nGreat & cheap\n</title>\n"
           "<review_text>\nLoved it &amp; more\n</review_text>\n</review>\n"
           "<review>\n<rating>\n3.0\n</rating>\n<review_text>\nmeh\n</review_text>\n</review>\n"
           "<review>\n<rating>\n1.0\n</rating>\n<review_text>\nawful\n</review_text>\n"
           "</review>\n")
    assert amazon.parse_reviews(raw) == [(1, "Great & cheap . Loved it & more"), (0, "awful")]


def test_conllu_and_panx_parsers():
    x = _script("xtreme")
    conllu = ("# sent_id = 1\n1-2\tdon't\t_\t_\n1\tdo\tdo\tAUX\n2\tn't\tnot\tPART\n"
              "2.1\tghost\t_\t_\n3\tgo\tgo\tVERB\n\n1\tHi\thi\tINTJ\n")
    assert x.parse_conllu(conllu) == [{"tokens": ["do", "n't", "go"],
                                       "tags": ["AUX", "PART", "VERB"]},
                                      {"tokens": ["Hi"], "tags": ["INTJ"]}]
    panx = "en:Paris\tB-LOC\nen:is\tO\n\nen:Bob\tB-PER\n"
    assert x.parse_panx(panx, "en") == [{"tokens": ["Paris", "is"], "tags": ["B-LOC", "O"]},
                                        {"tokens": ["Bob"], "tags": ["B-PER"]}]


def test_celeba_list_parsers():
    c = _script("celeba")
    names, rows = c.parse_attrs("2\nA B\n000001.jpg -1 1\n000002.jpg 1  1\n")
    assert names == ["A", "B"] and rows["000001.jpg"].tolist() == [0, 1]
    assert c.parse_partition("000001.jpg 0\n000002.jpg 2\n") == {"000001.jpg": "train",
                                                                  "000002.jpg": "test"}


def _newsgroups_archive(tmp_path: Path) -> Path:
    ng = _script("newsgroups")
    files = {}
    for split in ("train", "test"):
        for groups in ng.TASKS.values():
            for g in groups:
                for k in range(5 if split == "train" else 2):
                    files[f"20news-bydate-{split}/{g}/{k}"] = (
                        f"From: x@y\nSubject: s\n\nbody {g} number {k}\n")
    return _tar(tmp_path / "20news-bydate.tar.gz", files)


def test_newsgroups_script_end_to_end(tmp_path, monkeypatch):
    ng = _script("newsgroups")
    archive = _newsgroups_archive(tmp_path)
    out = tmp_path / "data"
    monkeypatch.setattr(sys, "argv", ["newsgroups.py", "--out", str(out), "--archive",
                                      str(archive)])
    with pytest.raises(SystemExit, match="published"):
        ng.main()  # a fake archive fails the published sha256
    monkeypatch.setattr(ng, "SHA256", _script("_common").sha256(archive))
    ng.main()
    data = registry.load("newsgroups", root=out, max_len=8, cache=False)
    assert data.sizes()["test"] == dict.fromkeys(ng.TASKS, 8)
    assert data.sizes()["train"]["comp"] + data.sizes()["val"]["comp"] == 20
    texts = data.test["sci"].texts
    assert all(t.startswith("body sci.") for t in texts)  # headers stripped


def test_amazon_script_end_to_end(tmp_path, monkeypatch):
    am = _script("amazon_sentiment")
    from mtlkit.data.amazon import DOMAINS

    files = {}
    for folder in DOMAINS.values():
        body = "".join(f"<review>\n<rating>\n{r}.0\n</rating>\n<review_text>\n{folder} {r} "
                       f"{k}\n</review_text>\n</review>\n" for k in range(5) for r in (1, 3, 5))
        files[f"sorted_data/{folder}/all.review"] = body
    archive = _tar(tmp_path / "unprocessed.tar.gz", files)
    out = tmp_path / "data"
    monkeypatch.setattr(sys, "argv", ["amazon_sentiment.py", "--out", str(out),
                                      "--archive", str(archive)])
    am.main()  # records the sha256 on first use
    assert "unprocessed.tar.gz" in (out / "checksums.json").read_text()
    data = registry.load("amazon_sentiment", root=out, min_freq=1, cache=False)
    assert len(data.tasks) == 14
    assert all(sum(n[d] for n in data.sizes().values()) == 10 for d in DOMAINS)  # 3s dropped
    archive.write_bytes(archive.read_bytes() + b"x")
    with pytest.raises(SystemExit, match="recorded on first download"):
        am.main()


@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("[a-z]*.py")), ids=lambda p: p.name)
def test_every_script_imports_offline_and_states_its_checksum_policy(path):
    mod = _script(path.stem)
    doc = (mod.__doc__ or "").lower()
    assert "checksum" in doc and ("recorded" in doc or "published" in doc), path.name
    assert hasattr(mod, "main") or "prepare(" in path.read_text()


def test_every_benchmark_loader_names_an_existing_script():
    from mtlkit.data import (
        amazon,
        celeba,
        cityscapes,
        newsgroups,
        nyuv2,
        office,
        pascal_context,
        xtreme,
    )

    scripts = [m.SCRIPT for m in (amazon, celeba, cityscapes, newsgroups, nyuv2,
                                  pascal_context, xtreme)]
    scripts += [s for s, _, _ in office.DATASETS.values()] + ["fashion_mnist.py"]
    for s in scripts:
        assert (SCRIPTS / s).exists(), s


def test_failed_download_says_how_to_continue(tmp_path, monkeypatch):
    c = _script("_common")

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(c.urllib.request, "urlopen", offline)
    args = c.parser("x").parse_args(["--out", str(tmp_path)])
    with pytest.raises(c.DownloadFailed, match="--archive"):
        c.fetch("https://example.invalid/f.tgz", "f.tgz", args)
    assert not list((tmp_path / "raw").glob("f.tgz*"))  # no partial file left behind
