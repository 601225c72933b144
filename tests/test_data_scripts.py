"""What the data_scripts prepare, run end to end on tiny copies of the real releases
(``fixtures/releases.py``, written without the code under test): the papers' protocols
(PASCAL human parts, XTREME POS, Amazon de-duplication, Office splits), exact counts, and
fresh layouts on re-runs.  Downloads, checksums and archives: ``test_data_downloads.py``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mtlkit.data import registry
from mtlkit.data.common import MANIFEST, DataCorrupt, DataUnavailable, write_manifest
from mtlkit.data.images import read_image

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE.parent / "data_scripts"
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(HERE / "fixtures"))
import data_fixtures as fx  # noqa: E402
import releases as rel  # noqa: E402


def script(name: str):
    return importlib.import_module(name)


# ----------------------------------------------------------------------------- parsers

def test_amazon_review_block_with_every_tag():
    block = rel.review_block(7, "books", 5.0, "Great & cheap", "Loved it &amp; more")
    block += rel.review_block(8, "books", 3.0, "Meh", "so so")
    block += rel.review_block(9, "books", 1.0, "Bad", "awful")
    am = script("amazon_sentiment")
    assert am.parse_reviews(block) == [(1, "Great & cheap . Loved it & more"), (0, "Bad . awful")]
    assert am.parse_reviews(block, label=0)[1] == (0, "Meh . so so")  # labelled files


def test_conllu_parser_skips_ranges_empty_nodes_and_comments():
    x = script("xtreme")
    text = rel._conllu_sentence("s1", [("Do", "AUX"), ("n't", "PART"), ("go", "VERB")],
                                mwt=True)
    assert x.parse_conllu(text) == [{"tokens": ["Do", "n't", "go"],
                                     "tags": ["AUX", "PART", "VERB"]}]
    blank = rel._conllu_sentence("s2", [("Hi", "INTJ"), ("!", "PUNCT")], blank=True)
    assert x.parse_conllu(blank)[0]["tokens"] == ["_", "_"]
    assert not x.has_text(x.parse_conllu(blank)[0])


def test_has_text_follows_xtreme():
    has = script("xtreme").has_text
    sent = lambda *toks: {"tokens": list(toks), "tags": ["X"] * len(toks)}  # noqa: E731
    assert has(sent("a", "b")) and has(sent("_", "b", "c"))  # one underscore of three
    assert not has(sent("_", "_", "c")) and not has(sent("_")) and not has(sent("_", "b"))


def test_panx_line_without_a_tab_is_a_sentence_break():
    x = script("xtreme")
    text = "en:Paris\tB-LOC\nen:is\tO\nen:-DOCSTART-\nen:Bob\tB-PER\n\nen:Al\tB-PER\n"
    assert x.parse_panx(text, "en") == [{"tokens": ["Paris", "is"], "tags": ["B-LOC", "O"]},
                                        {"tokens": ["Bob"], "tags": ["B-PER"]},
                                        {"tokens": ["Al"], "tags": ["B-PER"]}]


def test_celeba_list_parsers():
    c = script("celeba")
    names, rows = c.parse_attrs("2\nA B \n000001.jpg -1  1\n000002.jpg  1  1\n")
    assert names == ["A", "B"] and rows["000001.jpg"].tolist() == [0, 1]
    with pytest.raises(SystemExit, match="first line"):
        c.parse_attrs("3\nA B\n000001.jpg -1  1\n")
    assert c.parse_partition("000001.jpg 0\n000002.jpg 2\n") == {"000001.jpg": "train",
                                                                  "000002.jpg": "test"}


# ----------------------------------------------------------------------------- PASCAL

def test_pascal_images_without_people_are_ignore_regions(tmp_path):
    archive, expected = rel.pascal(tmp_path / "download")
    with fx.patched(script("pascal_context"), COUNTS={s: len(v) for s, v in
                                                      rel.PASCAL_IDS.items()}) as pc:
        pc.main(["--out", str(tmp_path), "--archive", str(archive)])
    base = tmp_path / "pascal_context"
    for sid, want in expected.items():
        got = read_image(base / "human_parts" / f"{sid}.png", mode="")
        assert np.array_equal(got, want), sid
    assert (expected["2008_000002"] == 255).all() and (expected["2008_000003"] == 255).all()
    doc = json.loads((base / MANIFEST).read_text())
    assert doc["human_parts_ignored"] == 2
    assert doc["semseg_source"] == {"VOC12": 1, "pascal-context": 4}
    data = registry.load("pascal_context", root=tmp_path, size=16, tasks=["human_parts"])
    assert (data.train[1][1]["human_parts"] == -1).all()  # 2008_000002: no loss, no metric
    assert (data.train[0][1]["human_parts"] >= 0).any()


def test_pascal_keeps_the_original_jpegs_and_the_documented_masks(tmp_path):
    import tarfile

    archive, _ = rel.pascal(tmp_path / "download")
    with fx.patched(script("pascal_context"), COUNTS={s: len(v) for s, v in
                                                      rel.PASCAL_IDS.items()}) as pc:
        pc.main(["--out", str(tmp_path), "--archive", str(archive)])
    base = tmp_path / "pascal_context"
    with tarfile.open(archive) as t:
        for sid in rel.PASCAL_IDS["train"]:
            assert (base / "image" / f"{sid}.jpg").read_bytes() == t.extractfile(
                f"PASCAL_MT/JPEGImages/{sid}.jpg").read()  # byte for byte, not re-encoded
        voc = t.extractfile("PASCAL_MT/semseg/VOC12/2008_000001.png").read()
        ctx = t.extractfile("PASCAL_MT/semseg/pascal-context/2008_000002.png").read()
    assert (base / "semseg" / "2008_000001.png").read_bytes() == voc
    assert (base / "semseg" / "2008_000002.png").read_bytes() == ctx


def test_pascal_wrong_count_is_an_error(tmp_path):
    archive, _ = rel.pascal(tmp_path / "download")
    with pytest.raises(SystemExit, match="3 files, the release has 4998"):
        script("pascal_context").main(["--out", str(tmp_path), "--archive", str(archive)])
    assert not (tmp_path / "pascal_context").exists()


# ----------------------------------------------------------------------------- XTREME

def test_xtreme_pos_drops_treebanks_released_without_text(tmp_path):
    ud = rel.ud(tmp_path / "download")
    script("xtreme").main(["--out", str(tmp_path), "--problems", "pos", "--archive", str(ud)])
    data = registry.load("xtreme_pos", root=tmp_path)
    tokens = [t for split in (data.train, data.val, data.test) for ds in split.values()
              for item in ds.items for t in item]
    assert tokens and "_" not in tokens
    assert data.sizes()["train"]["en"] == rel.UD_SENTENCES["train"]  # EWT only
    notes = json.loads((tmp_path / "xtreme" / MANIFEST).read_text())["notes"]
    assert any("UD_English-ESL" in n for n in notes)


def test_xtreme_reruns_replace_one_problem_and_keep_the_others(tmp_path):
    dl = tmp_path / "download"
    ud, paws = rel.ud(dl), rel.pawsx(dl, ["en", "zh", "de", "es"])
    x = script("xtreme")
    x.main(["--out", str(tmp_path), "--problems", "pi", "--archive", str(paws)])
    stale = tmp_path / "xtreme" / "pos" / "fr" / "train.jsonl"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}\n")  # left over from an earlier run
    x.main(["--out", str(tmp_path), "--problems", "pos", "--archive", str(ud)])
    files = json.loads((tmp_path / "xtreme" / MANIFEST).read_text())["files"]
    assert not stale.exists() and "pos/fr/train.jsonl" not in files
    assert "pi/en/train.jsonl" in files and registry.load("xtreme_pi", root=tmp_path)


# ----------------------------------------------------------------------------- Amazon

def test_amazon_reviews_are_unique_across_splits_and_domains(tmp_path):
    archive, kept = rel.amazon(tmp_path / "download")
    script("amazon_sentiment").main(["--out", str(tmp_path), "--archive", str(archive)])
    seen: dict[str, str] = {}
    for protocol in ("rating", "balanced"):
        data = registry.load("amazon_sentiment", root=tmp_path, protocol=protocol,
                             min_freq=1, cache=False)
        for split in ("train", "val", "test"):
            for d, ds in data.split(split).items():
                for t in ds.texts:
                    key = " ".join(t.split()).casefold()
                    assert seen.setdefault(f"{protocol}:{key}", f"{split}/{d}") == f"{split}/{d}"
        sizes = data.sizes()
        assert {d: sum(sizes[s][d] for s in sizes) for d in kept} == kept
        assert "mixed feelings" not in " ".join(seen).lower()  # conflicting labels: dropped
        stats = data.meta["sizes"]
        # books: a re-cased copy, and a text rated 5 and 1 (two copies, both dropped)
        assert stats["books"]["duplicates"] == 2 and stats["books"]["conflicting_labels"] == 1
        assert stats["video"]["in_an_earlier_domain"] == 1
    assert sizes["train"]["books"] == 14 and sizes["val"]["books"] == 2  # balanced 70/10/20
    assert sizes["test"]["books"] == 4


def test_amazon_balanced_split_is_fixed_on_disk(tmp_path):
    archive, _ = rel.amazon(tmp_path / "download")
    script("amazon_sentiment").main(["--out", str(tmp_path), "--archive", str(archive),
                                     "--protocols", "balanced"])
    a = registry.load("amazon_sentiment", root=tmp_path, protocol="balanced", seed=0,
                      min_freq=1, cache=False)
    b = registry.load("amazon_sentiment", root=tmp_path, protocol="balanced", seed=5,
                      min_freq=1, cache=False)
    assert a.test["dvd"].texts == b.test["dvd"].texts  # the seed does not move the split
    labels = a.train["dvd"].y.tolist() + a.val["dvd"].y.tolist() + a.test["dvd"].y.tolist()
    assert sorted(labels) == [0] * 10 + [1] * 10  # positive.review / negative.review
    with pytest.raises(DataUnavailable, match="no 'rating' protocol"):
        registry.load("amazon_sentiment", root=tmp_path, protocol="rating")


# ----------------------------------------------------------------------------- Office

def _office(tmp_path: Path, name: str, *argv: str):
    mod = script(name)
    archive, lists, counts = rel.office(tmp_path / "download", mod.RELEASE.libmtl_dataset)
    release = dataclasses.replace(
        mod.RELEASE,
        domains=tuple(dataclasses.replace(d, count=counts[d.libmtl])
                      for d in mod.RELEASE.domains),
        list_sha256={f.name: rel.sha256(f) for f in lists.iterdir()})
    script("_office").prepare("doc", release, ["--out", str(tmp_path), "--archive",
                                               str(archive), "--lists", str(lists), *argv])
    return release, lists


@pytest.mark.parametrize("name", ["office31", "office_home"])
def test_office_uses_the_rlw_authors_lists_by_default(tmp_path, name):
    release, lists = _office(tmp_path, name)
    data = registry.load(name, root=tmp_path, size=8)
    assert data.meta["split"] == "libmtl" and "LibMTL" in data.differences
    for d in release.domains:
        for split in ("train", "val", "test"):
            want = []
            for line in (lists / f"{d.libmtl}_{split}.txt").read_text().splitlines():
                path, label = line.rsplit(" ", 1)
                cls, file = path.split("/")[-2:]
                assert data.meta["classes"][int(label)] == cls  # LibMTL's label order
                want.append((f"{d.name}/{cls}/{file}", int(label)))
            assert data.split(split)[d.name].rows == want


def test_office_random_split_and_pinned_lists(tmp_path):
    _office(tmp_path / "a", "office31", "--split", "random")
    data = registry.load("office31", root=tmp_path / "a", size=8)
    assert data.meta["split"] == "random" and data.meta["classes"] == sorted(
        rel.OFFICE31_CLASSES)
    mod = script("office31")
    archive, lists, counts = rel.office(tmp_path / "b", "office-31")
    release = dataclasses.replace(mod.RELEASE, domains=tuple(
        dataclasses.replace(d, count=counts[d.libmtl]) for d in mod.RELEASE.domains))
    (lists / "dslr_val.txt").write_text("dslr/images/bike/frame_0004.jpg 3\n")  # tampered
    with pytest.raises(SystemExit, match="published sha256"):  # LibMTL's, pinned
        script("_office").prepare("doc", release, ["--out", str(tmp_path / "b"),
                                                   "--archive", str(archive),
                                                   "--lists", str(lists)])


def test_office_wrong_image_count_is_an_error(tmp_path):
    mod = script("office31")
    archive, lists, _ = rel.office(tmp_path / "download", "office-31")
    with pytest.raises(SystemExit, match="155 files, the release has 2817"):
        script("_office").prepare("doc", mod.RELEASE, ["--out", str(tmp_path), "--archive",
                                                       str(archive), "--lists", str(lists)])


# ----------------------------------------------------------------------------- dense

def test_dense_wrong_file_count_is_an_error(tmp_path):
    counts = {"train": 3, "val": 2}
    archive = rel.mtan(tmp_path / "download", "cityscapes", (128, 256), rel.CITY_FOLDERS,
                       counts, drop="train/depth/2.npy")
    with fx.patched(script("cityscapes"), COUNTS=counts) as cs, \
            pytest.raises(SystemExit, match="train/depth: 2 files, the release has 3"):
        cs.main(["--out", str(tmp_path), "--archive", str(archive)])
    assert not (tmp_path / "cityscapes").exists()


def test_dense_rerun_starts_from_a_fresh_folder(tmp_path):
    counts = {"train": 3, "val": 2}
    archive = rel.mtan(tmp_path / "download", "cityscapes", (128, 256), rel.CITY_FOLDERS,
                       counts)
    stale = tmp_path / "cityscapes" / "train" / "image" / "3.npy"
    stale.parent.mkdir(parents=True)
    np.save(stale, np.zeros((128, 256, 3), np.float32))  # from an earlier, larger run
    with fx.patched(script("cityscapes"), COUNTS=counts) as cs:
        cs.main(["--out", str(tmp_path), "--archive", str(archive)])
    doc = json.loads((tmp_path / "cityscapes" / MANIFEST).read_text())
    assert not stale.exists() and "train/image/3.npy" not in doc["files"]
    assert len(doc["files"]) == 5 * 3
    assert registry.load("cityscapes", root=tmp_path).sizes()["train"]["depth"] == 3


def test_dense_loader_reads_only_what_the_manifest_lists(tmp_path):
    f = fx.make_cityscapes(tmp_path)
    extra = tmp_path / "cityscapes" / "train" / "image" / "3.npy"
    np.save(extra, np.zeros((128, 256, 3), np.float32))  # not in the manifest
    assert registry.load("cityscapes", root=tmp_path).sizes() == f.sizes


# ----------------------------------------------------------------------------- text loaders

@pytest.mark.parametrize("name,rel_path", [("amazon_sentiment", "amazon_sentiment/rating/dvd.tsv"),
                                           ("newsgroups", "newsgroups/train/sci.tsv"),
                                           ("xtreme_pi", "xtreme/pi/en/train.jsonl"),
                                           ("office31", "office31/classes.txt")])
def test_text_loaders_raise_datacorrupt_on_bad_bytes(tmp_path, name, rel_path):
    f = fx.MAKERS[name](tmp_path)
    victim = tmp_path / rel_path
    victim.write_bytes(victim.read_bytes()[:20] + b"\xff\xfe\xfa" + victim.read_bytes()[20:])
    base = tmp_path / rel_path.split("/")[0]
    doc = json.loads((base / MANIFEST).read_text())
    extra = {k: v for k, v in doc.items() if k not in ("dataset", "format", "files")}
    write_manifest(base, doc["dataset"], extra=extra)  # the bytes pass their checksum
    with pytest.raises(DataCorrupt, match=r"byte \d+ is not valid UTF-8"):
        registry.load(name, root=tmp_path, **f.kwargs)


def test_fashion_message_names_the_real_folder(tmp_path):
    from mtlkit.data import multimnist

    with pytest.raises(DataUnavailable) as err:
        multimnist._parse_fashion(tmp_path)
    assert f"--out {tmp_path}`" in str(err.value) and "{root}" not in str(err.value)


# ----------------------------------------------------------------------------- every script

@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("[a-z]*.py")), ids=lambda p: p.name)
def test_every_script_imports_offline_and_states_its_checksum_policy(path):
    mod = script(path.stem)
    doc = (mod.__doc__ or "").lower()
    assert "checksum" in doc and ("recorded" in doc or "published" in doc), path.name
    assert callable(getattr(mod, "main", None)), path.name


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
