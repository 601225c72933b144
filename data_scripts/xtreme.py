"""XTREME problems of rlw.md Table 11: POS (UD 2.5: en, zh, te, vi), NER (WikiANN /
PAN-X: en, zh, de, es), NLI (MultiNLI machine-translated train + XNLI dev/test: en, zh,
de, es) and PI (PAWS-X: en, zh, de, es).

Preparation follows XTREME's own (``utils_preprocess.py``): for POS, every treebank of
a language is used, each sentence as its syntactic words (FORM, UPOS; multi-word ranges
and empty nodes skipped), and sentences released without text are dropped (a sentence
whose word forms are all, or all but one, ``_``).  A treebank left with no sentence is
dropped as a whole, e.g. UD_English-ESL, whose text is not distributed; the dropped
treebanks are printed and listed in MANIFEST.json (``notes``).  In PAN-X a line without
a tab is a sentence break.

Checksums: none of these archives publishes a sha256; each is printed and recorded in
``<out>/checksums.json`` once it has been extracted or read, and checked on later runs
(``--expect-sha256 NAME=HEX`` pins a value you trust).  PAN-X cannot be fetched by a
script (XTREME asks for a manual download of ``AmazonPhotos.zip``): pass the folder
holding ``panx_dataset/<lang>.tar.gz`` with ``--panx DIR``.  Each problem is prepared
into a fresh folder that replaces the old one only when complete.  Output
(``<out>/xtreme/<problem>/<lang>/{train,dev,test}.jsonl`` + MANIFEST.json) is read by
``mtlkit.data.xtreme.load_xtreme``.

    python data_scripts/xtreme.py --out .data --problems pos nli pi [--panx DIR]
"""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

from _archive import extract
from _common import BadFile, DownloadFailed, fetch, parse, parser, staged

from mtlkit.data.common import MANIFEST, write_manifest
from mtlkit.data.xtreme import NAME, PROBLEMS, write_problem

URLS = {
    "pi": ("https://storage.googleapis.com/paws/pawsx/x-final.tar.gz", "x-final.tar.gz"),
    "xnli": ("https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip", "XNLI-1.0.zip"),
    "xnli_mt": ("https://dl.fbaipublicfiles.com/XNLI/XNLI-MT-1.0.zip", "XNLI-MT-1.0.zip"),
    "pos": ("https://lindat.mff.cuni.cz/repository/xmlui/bitstream/handle/11234/1-3105/"
            "ud-treebanks-v2.5.tgz", "ud-treebanks-v2.5.tgz"),
}
PANX = [f"panx-{lang}.tar.gz" for lang in PROBLEMS["ner"][0]]
UD_LANG = {"en": "English", "zh": "Chinese", "te": "Telugu", "vi": "Vietnamese"}
csv.field_size_limit(1 << 30)


def _sentences(text: str, token_tag) -> list[dict]:
    """Sentences split at blank lines and wherever ``token_tag(line)`` returns "break";
    it returns (token, tag), or None to skip the line."""
    out, toks, tags = [], [], []
    for line in text.splitlines() + [""]:
        pair = token_tag(line) if line.strip() else "break"
        if pair == "break":
            if toks:
                out.append({"tokens": toks, "tags": tags})
            toks, tags = [], []
        elif pair is not None:
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


def has_text(sentence: dict) -> bool:
    """XTREME's rule: a sentence is kept unless its forms are all, or all but one, ``_``
    (how UD ships treebanks whose text may not be redistributed)."""
    n_empty = sum(tok == "_" for tok in sentence["tokens"])
    return n_empty == 0 or n_empty < len(sentence["tokens"]) - 1


def parse_panx(text: str, lang: str) -> list[dict]:
    """PAN-X ``lang:token<TAB>tag`` lines; a blank line or a line without a tab ends a
    sentence (as in XTREME's ``panx_preprocess``)."""

    def token_tag(line: str):
        tok, sep, tag = line.rpartition("\t")
        if not sep:
            return "break"
        return (tok[len(lang) + 1:] if tok.startswith(f"{lang}:") else tok), tag.strip()

    return _sentences(text, token_tag)


def read_tsv(path: Path, a: str, b: str, label: str, where=None) -> list[dict]:
    """Sentence pairs from a headed TSV (``where`` filters rows)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [{"text_a": r[a], "text_b": r[b], "label": r[label]} for r in rows
                if (where is None or where(r)) and r[a] and r[b]]


def find(root: Path, name: str) -> Path:
    """The file or folder ``name`` somewhere under ``root`` (the archives nest them)."""
    hit = next(root.rglob(name), None)
    if hit is None:
        raise BadFile(f"no {name} under {root}: is this the expected archive?")
    return hit


def read_treebanks(ud: Path, lang: str, notes: list[str]) -> dict[str, list[dict]]:
    """Every treebank of ``lang`` with text, concatenated per split."""
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for tb in sorted(p for p in ud.rglob(f"UD_{UD_LANG[lang]}-*") if p.is_dir()):
        got = {s: [] for s in splits}
        n_read = 0
        for split in splits:
            for f in sorted(tb.glob(f"*-ud-{split}.conllu")):
                sents = parse_conllu(f.read_text(encoding="utf-8"))
                n_read += len(sents)
                got[split] += [s for s in sents if has_text(s)]
        kept = sum(len(v) for v in got.values())
        if n_read and not kept:
            notes.append(f"pos/{lang}: dropped {tb.name} (released without text: its word "
                         "forms are `_`)")
            print(f"  {notes[-1]}")
        elif kept < n_read:
            print(f"  pos/{lang}: {tb.name}: dropped {n_read - kept} of {n_read} sentences "
                  "without text")
        for s in splits:
            splits[s] += got[s]
    return splits


def pos(args, notes: list[str]) -> dict:
    ud = extract(fetch(*URLS["pos"], args), args.raw / "ud")
    data = {lang: read_treebanks(ud, lang, notes) for lang in PROBLEMS["pos"][0]}
    for lang, splits in data.items():
        if not all(splits.values()):
            raise BadFile(f"pos/{lang}: no sentences for {[s for s, v in splits.items() if not v]}"
                          f" in {ud}; is this ud-treebanks-v2.5?")
    return data


def pi(args, notes: list[str]) -> dict:
    src = extract(fetch(*URLS["pi"], args), args.raw / "pawsx")
    base = find(src, "x-final")
    data = {}
    for lang in PROBLEMS["pi"][0]:
        d = base / lang
        train = d / ("train.tsv" if lang == "en" else "translated_train.tsv")
        data[lang] = {"train": read_tsv(train, "sentence1", "sentence2", "label"),
                      "dev": read_tsv(d / "dev_2k.tsv", "sentence1", "sentence2", "label"),
                      "test": read_tsv(d / "test_2k.tsv", "sentence1", "sentence2", "label")}
    return data


def nli(args, notes: list[str]) -> dict:
    ev = extract(fetch(*URLS["xnli"], args), args.raw / "xnli")
    mt = extract(fetch(*URLS["xnli_mt"], args), args.raw / "xnli_mt")
    data = {}
    for lang in PROBLEMS["nli"][0]:
        train = read_tsv(find(mt, f"multinli.train.{lang}.tsv"), "premise", "hypo", "label")
        for r in train:
            r["label"] = "contradiction" if r["label"] == "contradictory" else r["label"]
        keep = lambda r, lang=lang: r["language"] == lang  # noqa: E731
        data[lang] = {"train": train,
                      "dev": read_tsv(find(ev, "xnli.dev.tsv"), "sentence1", "sentence2",
                                      "gold_label", keep),
                      "test": read_tsv(find(ev, "xnli.test.tsv"), "sentence1", "sentence2",
                                       "gold_label", keep)}
    return data


def ner(args, notes: list[str]) -> dict | None:
    if args.panx is None:
        print("ner: skipped; download AmazonPhotos.zip as the XTREME README says, unzip it "
              "and pass --panx <folder containing panx_dataset/>")
        return None
    data = {}
    for lang, name in zip(PROBLEMS["ner"][0], PANX):
        tgz = next(Path(args.panx).rglob(f"{lang}.tar.gz"), None)
        if tgz is None:
            raise BadFile(f"--panx {args.panx}: no {lang}.tar.gz (panx_dataset/<lang>.tar.gz)")
        args.given.setdefault(name, tgz)
        got = fetch("", name, args, get=_manual)
        data[lang] = read_panx(got.path, lang)
        got.confirm()
    return data


def read_panx(tgz: Path, lang: str) -> dict[str, list[dict]]:
    """train / dev / test of one PAN-X ``<lang>.tar.gz`` (read, never extracted)."""
    try:
        with tarfile.open(tgz) as t:
            members = {Path(m.name).name: m for m in t.getmembers() if m.isfile()}
            return {s: parse_panx(t.extractfile(members[s]).read().decode("utf-8"), lang)
                    for s in ("train", "dev", "test")}
    except (tarfile.TarError, EOFError, OSError, KeyError, UnicodeDecodeError) as err:
        raise BadFile(f"{tgz} is damaged or not a PAN-X archive ({type(err).__name__}: {err});"
                      " unzip AmazonPhotos.zip again") from None


def _manual(url: str, dest: Path) -> None:
    raise DownloadFailed(f"{dest.name} must be downloaded by hand (see --panx)")


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, [f for _, f in URLS.values()] + PANX)
    p.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    p.add_argument("--panx", type=Path, default=None)
    args = parse(p, argv)
    base = args.out / NAME
    notes = _old_notes(base)
    for problem in args.problems:
        print(f"== {problem}")
        new: list[str] = []
        data = {"pos": pos, "pi": pi, "nli": nli, "ner": ner}[problem](args, new)
        if data is None:
            continue
        with staged(base, problem) as stage:
            write_problem(stage / problem, data)
        notes = [n for n in notes if not n.startswith(f"{problem}/")] + new
    print(f"wrote {write_manifest(base, NAME, extra={'notes': notes})}")


def _old_notes(base: Path) -> list[str]:
    try:
        return list(json.loads((base / MANIFEST).read_text()).get("notes", []))
    except (OSError, ValueError, AttributeError):
        return []


if __name__ == "__main__":
    main()
