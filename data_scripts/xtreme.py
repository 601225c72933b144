"""XTREME problems of rlw.md Table 11: POS (UD 2.5: en, zh, te, vi), NER (WikiANN /
PAN-X: en, zh, de, es), NLI (MultiNLI machine-translated train + XNLI dev/test: en, zh,
de, es) and PI (PAWS-X: en, zh, de, es).

Checksums: none of these archives publishes a sha256; each is recorded in
``<out>/checksums.json`` on first download and checked on later runs.  PAN-X cannot be
fetched by a script (XTREME asks for a manual download of ``AmazonPhotos.zip``): pass
the folder holding ``panx_dataset/<lang>.tar.gz`` with ``--panx DIR``.  Output
(``<out>/xtreme/<problem>/<lang>/{train,dev,test}.jsonl`` + MANIFEST.json) is read by
``mtlkit.data.xtreme.load_xtreme``.

    python data_scripts/xtreme.py --out .data --problems pos nli pi [--panx DIR]
"""

from __future__ import annotations

import csv
import tarfile
from pathlib import Path

from _common import extract, fetch, parser

from mtlkit.data.common import write_manifest
from mtlkit.data.xtreme import NAME, PROBLEMS, write_xtreme

URLS = {
    "pi": ("https://storage.googleapis.com/paws/pawsx/x-final.tar.gz", "x-final.tar.gz"),
    "xnli": ("https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip", "XNLI-1.0.zip"),
    "xnli_mt": ("https://dl.fbaipublicfiles.com/XNLI/XNLI-MT-1.0.zip", "XNLI-MT-1.0.zip"),
    "pos": ("https://lindat.mff.cuni.cz/repository/xmlui/bitstream/handle/11234/1-3105/"
            "ud-treebanks-v2.5.tgz", "ud-treebanks-v2.5.tgz"),
}
UD_LANG = {"en": "English", "zh": "Chinese", "te": "Telugu", "vi": "Vietnamese"}
csv.field_size_limit(1 << 30)


def _sentences(text: str, token_tag) -> list[dict]:
    """Blank-line-separated sentences; ``token_tag(line)`` gives (token, tag) or None to skip."""
    out, toks, tags = [], [], []
    for line in text.splitlines() + [""]:
        if not line.strip():
            if toks:
                out.append({"tokens": toks, "tags": tags})
            toks, tags = [], []
            continue
        pair = token_tag(line)
        if pair is not None:
            toks.append(pair[0])
            tags.append(pair[1])
    return out


def parse_conllu(text: str) -> list[dict]:
    """Sentences as ``{"tokens", "tags"}`` (FORM, UPOS); comments, multi-word ranges and
    empty nodes are skipped."""

    def token_tag(line: str):
        cols = line.split("\t")
        if line.startswith("#") or len(cols) < 4 or "-" in cols[0] or "." in cols[0]:
            return None
        return cols[1], cols[3]

    return _sentences(text, token_tag)


def parse_panx(text: str, lang: str) -> list[dict]:
    """PAN-X ``lang:token<TAB>tag`` lines, sentences separated by blank lines."""

    def token_tag(line: str):
        tok, _, tag = line.rpartition("\t")
        return (tok[len(lang) + 1:] if tok.startswith(f"{lang}:") else tok), tag

    return _sentences(text, token_tag)


def read_tsv(path: Path, a: str, b: str, label: str, where=None) -> list[dict]:
    """Sentence pairs from a headed TSV (``where`` filters rows)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [{"text_a": r[a], "text_b": r[b], "label": r[label]} for r in rows
                if (where is None or where(r)) and r[a] and r[b]]


def pos(args, raw: Path) -> None:
    url, file = URLS["pos"]
    ud = extract(fetch(url, file, args), raw / "ud")
    data = {}
    for lang in PROBLEMS["pos"][0]:
        splits = {"train": [], "dev": [], "test": []}
        for tb in sorted(ud.rglob(f"UD_{UD_LANG[lang]}-*")):
            for split in splits:
                for f in tb.glob(f"*-ud-{split}.conllu"):
                    splits[split] += parse_conllu(f.read_text(encoding="utf-8"))
        data[lang] = splits
    write_xtreme(args.out, "pos", data, manifest=False)


def pi(args, raw: Path) -> None:
    url, file = URLS["pi"]
    src = extract(fetch(url, file, args), raw / "pawsx")
    base = next(src.rglob("x-final"))
    data = {}
    for lang in PROBLEMS["pi"][0]:
        d = base / lang
        train = d / ("train.tsv" if lang == "en" else "translated_train.tsv")
        data[lang] = {"train": read_tsv(train, "sentence1", "sentence2", "label"),
                      "dev": read_tsv(d / "dev_2k.tsv", "sentence1", "sentence2", "label"),
                      "test": read_tsv(d / "test_2k.tsv", "sentence1", "sentence2", "label")}
    write_xtreme(args.out, "pi", data, manifest=False)


def nli(args, raw: Path) -> None:
    ev = extract(fetch(*URLS["xnli"], args), raw / "xnli")
    mt = extract(fetch(*URLS["xnli_mt"], args), raw / "xnli_mt")
    data = {}
    for lang in PROBLEMS["nli"][0]:
        train = read_tsv(next(mt.rglob(f"multinli.train.{lang}.tsv")), "premise", "hypo",
                         "label")
        for r in train:
            r["label"] = "contradiction" if r["label"] == "contradictory" else r["label"]
        keep = lambda r, lang=lang: r["language"] == lang  # noqa: E731
        data[lang] = {"train": train,
                      "dev": read_tsv(next(ev.rglob("xnli.dev.tsv")), "sentence1",
                                      "sentence2", "gold_label", keep),
                      "test": read_tsv(next(ev.rglob("xnli.test.tsv")), "sentence1",
                                       "sentence2", "gold_label", keep)}
    write_xtreme(args.out, "nli", data, manifest=False)


def ner(args, raw: Path) -> None:
    if args.panx is None:
        print("ner: skipped; download AmazonPhotos.zip as the XTREME README says, unzip it "
              "and pass --panx <folder containing panx_dataset/>")
        return
    data = {}
    for lang in PROBLEMS["ner"][0]:
        tgz = next(Path(args.panx).rglob(f"{lang}.tar.gz"))
        with tarfile.open(tgz) as t:
            members = {Path(m.name).name: m for m in t.getmembers() if m.isfile()}
            data[lang] = {s: parse_panx(t.extractfile(members[s]).read().decode("utf-8"), lang)
                          for s in ("train", "dev", "test")}
    write_xtreme(args.out, "ner", data, manifest=False)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    p.add_argument("--panx", type=Path, default=None)
    args = p.parse_args()
    raw = args.raw or args.out / "raw"
    for problem in args.problems:
        print(f"== {problem}")
        {"pos": pos, "pi": pi, "nli": nli, "ner": ner}[problem](args, raw)
    print(f"wrote {write_manifest(args.out / NAME, NAME)}")


if __name__ == "__main__":
    main()
