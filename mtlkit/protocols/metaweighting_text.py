"""Protocol of the MetaWeighting paper's text experiments (``metaweighting.txt`` §6, App. B–C).

What a notebook needs to run them from parameters alone:

* the two problems of §6.1 and their stand-ins (:data:`PROBLEMS`): multi-domain
  sentiment (Amazon, 14 binary tasks; embedded ``sentiment``) and topic classification
  (20 Newsgroups in Table 1's four 4-class tasks; embedded ``topics``);
* the paper's rows (§6.2: STL, Uniform = EW, Uncertainty = UW, GradNorm, MGDA, AdvMTL,
  TchebycheffAdv, BanditMTL, MetaWeighting; App. C on BERT: Tchebycheff instead of the two
  adversarial methods) and the extra rows (RLW, Auto-λ and the rest of the zoo), each a
  :class:`Row` whose model is the architecture its method is defined on
  (:mod:`mtlkit.protocols.metaweighting_text_models`);
* App. B's settings as profile defaults (:data:`PROFILE_SETTINGS`, the ``full`` column is
  App. B) that every notebook parameter can override (:func:`settings`);
* the baselines' learning-rate search over App. B's grid, selected on the validation
  split only (:func:`lr_search`), and the method x seed grid (:func:`run_rows`).

Used by notebooks 50, 52, 53 and 54.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from mtlkit import experiments, results
from mtlkit.data.base import MTLData
from mtlkit.protocols.metaweighting_text_models import checked_factory, required_arch
from mtlkit.trainer import TrainConfig

#: App. B: the baselines' learning-rate grid (the model with the best validation score wins)
LR_GRID: tuple[float, ...] = (1e-5, 2e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3)
#: App. B: the query-split ratio rho = m / n (both problems)
QUERY_RATIO = 0.1


@dataclass(frozen=True)
class Problem:
    """One problem of §6.1: the paper's dataset, its embedded stand-in, its figures and
    MetaWeighting's step size alpha (App. B)."""

    key: str  #: "sentiment" or "topics"
    paper: str  #: the registry name of the paper's dataset (prepared by data_scripts/)
    stand_in: str  #: the registry name of the embedded stand-in
    alpha: float  #: App. B: alpha = 0.1 (sentiment), 0.5 (topics)
    figure: int  #: the accuracy figure on TextCNN
    bert_figure: int  #: the accuracy figure on BERT (App. C)
    loss_figure: int  #: the train/query/test loss figure (§6.7)
    weights_figure: int  #: the weight-evolution figure (§6.8)


PROBLEMS: dict[str, Problem] = {
    "sentiment": Problem("sentiment", "amazon_sentiment", "sentiment", 0.1, 2, 10, 6, 8),
    "topics": Problem("topics", "newsgroups", "topics", 0.5, 3, 11, 7, 9),
}


def problem_of(dataset: str) -> Problem:
    """The :class:`Problem` a dataset name belongs to (the paper's data or its stand-in)."""
    for p in PROBLEMS.values():
        if dataset in (p.key, p.paper, p.stand_in):
            return p
    names = sorted({n for p in PROBLEMS.values() for n in (p.paper, p.stand_in)})
    raise ValueError(f"dataset {dataset!r} is not one of §6.1's problems; choose one of {names}")


def is_stand_in(dataset: str) -> bool:
    """True for the embedded stand-ins (their numbers are not the paper's data)."""
    return dataset == problem_of(dataset).stand_in


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Settings:
    """Every knob of a text run (App. B in the ``full`` profile)."""

    datasets: tuple[str, ...]  #: the problems to run (paper data or stand-ins)
    seeds: tuple[int, ...]  #: evaluation seeds (App. B: 10 runs per method)
    n_per_task: int | None  #: examples kept per task of the embedded data (None: all)
    max_len: int  #: tokens per text for TextCNN (0: the loader's default)
    epochs: int  #: App. B: 3000 (TextCNN), 50 (BERT)
    batch_size: int  #: App. B: 256 (TextCNN), 32 (BERT)
    lr: float  #: App. B: 1e-3 (TextCNN), 2e-5 (BERT); MetaWeighting's, and the default
    num_filters: int  #: App. B: TextCNN filters per kernel width (100)
    kernel_sizes: tuple[int, ...]  #: App. B: 3, 5, 7
    dropout: float  #: TextCNN dropout (not stated in App. B)
    glove_path: str  #: 300-d GloVe text file (App. B), or "embedded" (the 50-d table)
    glove_dim: int  #: dimension of the vectors in glove_path
    query_ratio: float  #: App. B: rho = 0.1
    lr_grid: tuple[float, ...]  #: App. B's grid, or a part of it on a CPU
    search_seeds: tuple[int, ...]  #: seeds of the lr search (disjoint from ``seeds``)
    eval_every: int  #: epochs between validation/test evaluations
    extras: tuple[str, ...]  #: extra rows (labels of :data:`EXTRA_ROWS`; ("all",) = all)
    alpha_sentiment: float = 0.1  #: App. B: MetaWeighting's alpha for sentiment
    alpha_topics: float = 0.5  #: App. B: MetaWeighting's alpha for topics

    def problem(self, dataset: str) -> Problem:
        """The :class:`Problem` of ``dataset`` with this run's alpha."""
        p = problem_of(dataset)
        return replace(p, alpha=self.alpha_sentiment if p.key == "sentiment"
                       else self.alpha_topics)

    def table(self) -> pd.DataFrame:
        """The settings as a two-column table (for the notebook's printout)."""
        return pd.DataFrame({"setting": list(asdict(self)),
                             "value": [str(v) for v in asdict(self).values()]})


_BOTH = ("sentiment", "topics")
_ALL_EXTRAS = ("all",)
#: the defaults of each profile (a notebook parameter left at 0 / "" / [] takes these)
PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(datasets=_BOTH, seeds=(0, 1), n_per_task=48, max_len=24, epochs=2,
                  batch_size=16, lr=1e-3, num_filters=8, kernel_sizes=(3, 5, 7), dropout=0.5,
                  glove_path="embedded", glove_dim=50, query_ratio=QUERY_RATIO,
                  lr_grid=(1e-3, 5e-3), search_seeds=(1000,), eval_every=1,
                  extras=("RLW", "AutoLambda")),
    "teach": dict(datasets=_BOTH, seeds=(0, 1, 2), n_per_task=400, max_len=32, epochs=12,
                  batch_size=32, lr=1e-3, num_filters=32, kernel_sizes=(3, 5, 7), dropout=0.5,
                  glove_path="embedded", glove_dim=50, query_ratio=QUERY_RATIO,
                  lr_grid=(1e-3, 5e-3), search_seeds=(1000,), eval_every=1,
                  extras=("RLW", "AutoLambda")),
    # paper-cpu: every paper row, RLW and Auto-λ over 4 seeds, sized to ~12 min for
    # notebook 50 at one thread on a quiet core (measured); the zoo: EXTRAS=["all"]
    "paper-cpu": dict(datasets=_BOTH, seeds=tuple(range(4)), n_per_task=160, max_len=32,
                      epochs=10, batch_size=32, lr=1e-3, num_filters=32,
                      kernel_sizes=(3, 5, 7), dropout=0.5, glove_path="embedded", glove_dim=50,
                      query_ratio=QUERY_RATIO, lr_grid=(1e-3, 5e-3),
                      search_seeds=(1000,), eval_every=1, extras=("RLW", "AutoLambda")),
    "full": dict(datasets=("amazon_sentiment", "newsgroups"), seeds=tuple(range(10)),
                 n_per_task=None, max_len=0, epochs=3000, batch_size=256, lr=1e-3,
                 num_filters=100, kernel_sizes=(3, 5, 7), dropout=0.5, glove_path="",
                 glove_dim=300, query_ratio=QUERY_RATIO, lr_grid=LR_GRID,
                 search_seeds=(1000, 1001), eval_every=50, extras=_ALL_EXTRAS),
}


#: settings for which 0 is a value (not "by profile"); None leaves them at the profile's
_ZERO_IS_A_VALUE = frozenset({"train_layers"})


def _unset(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0) \
        or (isinstance(v, (str, list, tuple)) and len(v) == 0)


def settings(profile: str, data_dir: str = "", **params: Any) -> Settings:
    """The :class:`Settings` of ``profile`` with every parameter that is set (not 0, "" or
    []) taking precedence.  ``seeds=[s]`` (one seed) means as many seeds as the profile
    runs, starting at ``s``; two or more are taken as given.  In ``full`` an empty
    ``glove_path`` means ``<DATA_DIR>/glove/glove.840B.300d.txt`` (or ``glove.6B.300d.txt``)."""
    if profile not in PROFILE_SETTINGS:
        raise ValueError(f"profile {profile!r}; choose one of {sorted(PROFILE_SETTINGS)}")
    base = _resolve({"alpha_sentiment": 0.1, "alpha_topics": 0.5,
                     **PROFILE_SETTINGS[profile]}, params)
    if not base["glove_path"]:
        base["glove_path"] = _default_glove(data_dir)
    return Settings(**base)


@dataclass(frozen=True)
class TransformerSettings:
    """Every knob of a transformer run (App. B–C in the ``full`` profile: BERT-base fine-tuned
    whole, lr 2e-5, batch 32, max length 256, 50 epochs)."""

    datasets: tuple[str, ...]  #: the problems to run
    seeds: tuple[int, ...]  #: evaluation seeds (App. C: 10 runs per method)
    n_per_task: int | None  #: examples kept per task of the embedded data (None: all)
    model: str  #: a Hugging Face name or a local folder ("minilm": the embedded MiniLM)
    train_layers: int  #: 0: fine-tune every layer on raw text (App. C); k: the top k only
    max_length: int  #: App. B: 256 tokens
    epochs: int  #: App. B: 50
    batch_size: int  #: App. B: 32
    lr: float  #: App. B: 2e-5
    query_ratio: float  #: App. B: 0.1
    lr_grid: tuple[float, ...]  #: App. B's grid, or a part of it on a CPU
    search_seeds: tuple[int, ...]  #: seeds of the lr search (disjoint from ``seeds``)
    eval_every: int  #: epochs between validation/test evaluations
    extras: tuple[str, ...]  #: extra rows
    alpha_sentiment: float = 0.1  #: App. B
    alpha_topics: float = 0.5  #: App. B
    max_len: int = 0  #: unused (the tokenizer cuts at max_length); for :func:`load_problem`

    problem = Settings.problem
    table = Settings.table


_CPU_BERT = dict(model="minilm", train_layers=1, max_length=32, lr=5e-4,
                 query_ratio=QUERY_RATIO, eval_every=1, extras=("RLW", "AutoLambda"))
#: the transformer defaults of each profile (notebook 53)
TRANSFORMER_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(datasets=_BOTH, seeds=(0, 1), n_per_task=24, epochs=1, batch_size=8,
                  lr_grid=(5e-4,), search_seeds=(1000,), **{**_CPU_BERT, "max_length": 24}),
    "teach": dict(datasets=_BOTH, seeds=(0, 1), n_per_task=120, epochs=6, batch_size=16,
                  lr_grid=(5e-4,), search_seeds=(1000,), **_CPU_BERT),
    # paper-cpu: ~15 min at one thread (measured: 10 min at 60 examples x 3 epochs)
    "paper-cpu": dict(datasets=_BOTH, seeds=tuple(range(3)), n_per_task=100, epochs=5,
                      batch_size=8, lr_grid=(5e-4,), search_seeds=(1000,), **_CPU_BERT),
    "full": dict(datasets=("amazon_sentiment", "newsgroups"), seeds=tuple(range(10)),
                 n_per_task=None, model="bert-base-uncased", train_layers=0, max_length=256,
                 epochs=50, batch_size=32, lr=2e-5, query_ratio=QUERY_RATIO, lr_grid=LR_GRID,
                 search_seeds=(1000, 1001), eval_every=1, extras=_ALL_EXTRAS),
}


def transformer_settings(profile: str, **params: Any) -> TransformerSettings:
    """:class:`TransformerSettings` of ``profile``, parameters as in :func:`settings`."""
    if profile not in TRANSFORMER_SETTINGS:
        raise ValueError(f"profile {profile!r}; choose one of {sorted(TRANSFORMER_SETTINGS)}")
    base = _resolve({"alpha_sentiment": 0.1, "alpha_topics": 0.5,
                     **TRANSFORMER_SETTINGS[profile]}, params)
    return TransformerSettings(**base)


def _resolve(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the parameters that are set; ``seeds=[s]`` expands to the profile's
    number of seeds from s; checks the datasets and that search and evaluation seeds differ."""
    bad = sorted(set(params) - set(base))
    if bad:
        raise ValueError(f"unknown setting(s) {bad}; valid: {sorted(base)}")
    params = dict(params)
    seeds = params.pop("seeds", None)
    if seeds is not None and len(seeds) == 1:
        seeds = tuple(range(int(seeds[0]), int(seeds[0]) + len(base["seeds"])))
    params["seeds"] = seeds
    for k, v in params.items():
        if (v is not None and k in _ZERO_IS_A_VALUE) or not _unset(v):
            base[k] = tuple(v) if isinstance(v, list) else v
    for d in base["datasets"]:
        problem_of(d)
    if set(base["seeds"]) & set(base["search_seeds"]):
        raise ValueError(f"search seeds {base['search_seeds']} overlap the evaluation seeds "
                         f"{base['seeds']}: the lr search must not see the runs it selects for")
    return base


def _default_glove(data_dir: str) -> str:
    from mtlkit.data.common import data_root

    root = data_root(data_dir or None) / "glove"
    for name in ("glove.840B.300d.txt", "glove.6B.300d.txt"):
        if (root / name).is_file():
            return str(root / name)
    return str(root / "glove.840B.300d.txt")  # reported as missing when it is read


def train_config(s: Settings | TransformerSettings, device: str,
                 progress: bool = False) -> TrainConfig:
    """The :class:`~mtlkit.trainer.TrainConfig` of ``s`` (Adam, model selection on the
    validation accuracy; the query split of bi-level methods is ``s.query_ratio``).  A
    finished run keeps its results only: a BERT-base checkpoint with Adam's moments is
    1.3 GB, and the grid has hundreds of runs."""
    return TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, optimizer="adam",
                       select="acc", device=device, progress=progress,
                       eval_every=min(s.eval_every, s.epochs), keep_files="none")


def load_problem(dataset: str, s: Settings | TransformerSettings, data_dir: str = "",
                 output: str = "ids", seed: int = 0) -> MTLData:
    """The problem's data: an embedded stand-in (``n_per_task``) or the paper's data
    prepared under ``data_dir`` by ``data_scripts/`` (split seed ``seed``, fixed across the
    training seeds)."""
    from mtlkit import data as mdata

    p = problem_of(dataset)
    kw: dict[str, Any] = {"seed": seed, "output": output}
    if s.max_len:
        kw["max_len"] = s.max_len
    if dataset == p.stand_in:
        return mdata.load(dataset, n_per_task=s.n_per_task, **kw)
    if dataset == "amazon_sentiment" and s.n_per_task:
        kw["n_per_task"] = s.n_per_task
    return mdata.load(dataset, root=data_dir or None, **kw)


def tag(data: MTLData) -> str:
    """The dataset's name with what it stands in for: "topics (stand-in for 20
    Newsgroups)", or the bare name of the paper's data (to print next to every number)."""
    short = data.stands_in_for.split(" (")[0].split(",")[0]
    return f"{data.name} (stand-in for {short})" if data.stands_in_for else data.name


def describe(data: MTLData) -> str:
    """Two lines: the tasks with their train/val/test sizes, and how a stand-in differs."""
    sizes = {t: (len(data.train[t]), len(data.val[t]), len(data.test[t]))
             for t in data.task_names}
    return (f"{tag(data)}: {len(sizes)} tasks, train/val/test {sizes}\n"
            f"   differs: {data.differences or '-'}")


# ------------------------------------------------------------------ rows
@dataclass(frozen=True)
class Row:
    """One row of a table/figure: ``label`` trains method ``spec`` on the architecture its
    strategy is defined on; ``search``: its learning rate is chosen by :func:`lr_search`."""

    label: str
    spec: str
    group: str  #: "paper" (§6.2 / App. C) or "extra"
    search: bool = True  #: App. B: the baselines' lr is searched; MetaWeighting's is fixed
    note: str = ""  #: what the row is, in a few words (shown under the table)

    def method(self) -> experiments.Method:
        """The :class:`~mtlkit.experiments.Method` of this row, labelled ``label``."""
        m = experiments.parse_method(self.spec)
        return replace(m, label=self.label)

    @property
    def arch(self) -> str:
        """The architecture the row's method is defined on."""
        return required_arch(self.method())


def metaweighting_row(alpha: float, label: str = "MetaWeighting", **hp: Any) -> Row:
    """MetaWeighting with step size ``alpha`` (and other hyper-parameters); its lr is the
    fixed App. B one, not searched."""
    args = ", ".join(f"{k}: {v!r}" for k, v in {"alpha": float(alpha), **hp}.items())
    return Row(label, f"MetaWeighting({args})", "paper", search=False,
               note="Eq. 10 hypergradient, min-norm direction, simplex")


def paper_rows(problem: Problem, encoder: str = "textcnn") -> list[Row]:
    """§6.2's rows on TextCNN (Figs 2–3), or App. C's on a transformer (Figs 10–11:
    AdvMTL and TchebycheffAdv are "not available for BERT"; Tchebycheff without the
    adversarial module replaces them)."""
    if encoder not in ("textcnn", "transformer"):
        raise ValueError(f"encoder={encoder!r}; choose 'textcnn' or 'transformer'")
    rows = [Row("STL", "STL", "paper", note="one model per task"),
            Row("EW", "EW", "paper", note="Uniform: w = 1/T"),
            Row("UW", "UW", "paper", note="Uncertainty (Kendall et al. 2018)"),
            Row("GradNorm", "GradNorm", "paper", note="Chen et al. 2018"),
            Row("MGDA", "MGDA@param", "paper", note="Sener & Koltun 2018, on the shared "
                "parameters: MGDA-UB needs one representation of the same examples for every "
                "task, and here each task has its own batch")]
    if encoder == "textcnn":
        rows += [Row("AdvMTL", "AdvMTL", "paper", note="shared-private + discriminator"),
                 Row("TchebycheffAdv", "TchebycheffAdv", "paper",
                     note="Tchebycheff on shared-private + discriminator")]
    else:
        rows += [Row("Tchebycheff", "Tchebycheff", "paper", note="App. C: without adversary")]
    rows += [Row("BanditMTL", "BanditMTL", "paper", note="Mao et al. 2021"),
             metaweighting_row(problem.alpha)]
    return rows


#: the extra rows (not in the paper), in the order they are shown
EXTRA_ROWS: tuple[Row, ...] = (
    Row("RLW", "RLW-dirichlet", "extra", note="random weights (rlw.md), Dirichlet"),
    Row("AutoLambda", "AutoLambda", "extra", note="column sum of Eq. 10's D, training batch"),
    Row("DWA", "DWA", "extra"), Row("PCGrad", "PCGrad", "extra"),
    Row("GradDrop", "GradDrop@param", "extra"), Row("IMTL", "IMTL", "extra"),
    Row("GradVac", "GradVac", "extra"), Row("CAGrad", "CAGrad", "extra"),
    Row("Nash-MTL", "Nash-MTL", "extra"), Row("Aligned-MTL", "Aligned-MTL", "extra"),
    Row("UPGrad", "UPGrad", "extra"), Row("FAMO", "FAMO", "extra"),
    Row("DB-MTL", "DB-MTL", "extra"), Row("GLS", "GLS", "extra"),
    Row("Tchebycheff", "Tchebycheff", "extra", note="without adversary, on HPS"),
)


def extra_rows(names: Sequence[str], exclude: Sequence[str] = ()) -> list[Row]:
    """The extra rows named (``("all",)`` = every one), minus labels in ``exclude``."""
    known = {r.label: r for r in EXTRA_ROWS}
    if tuple(names) == _ALL_EXTRAS:
        names = list(known)
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown extra row(s) {bad}; choose from {list(known)} or ['all']")
    return [known[n] for n in names if n not in set(exclude)]


def fixed_lr_row(label: str, lr: float) -> Row:
    """``label`` (e.g. EW) at the fixed learning rate MetaWeighting trains with, not
    searched: the like-for-like reference for MetaWeighting's fixed lr (App. B)."""
    return Row(f"{label} (lr {lr:g}, not searched)", label, "extra", search=False,
               note="at MetaWeighting's fixed lr: what the lr search adds")


def acting_row(row: Row, alpha: float) -> Row:
    """``row`` (MetaWeighting or AutoLambda) at the step size ``alpha`` where its weights
    move (see :mod:`mtlkit.protocols.metaweighting_text_diagnosis`), labelled as such."""
    m = row.method()
    hp = {**m.hparams, "alpha": float(alpha)}
    args = ", ".join(f"{k}: {v!r}" for k, v in hp.items())
    return Row(f"{row.label} (acting, α={alpha:.3g})", f"{m.name}({args})", row.group,
               search=False, note=f"α where its weights move, at the lr it was computed for "
                                  f"({row.note or m.name})")


# ------------------------------------------------------------------ runs
Factories = Mapping[str, Callable[[int], Any]]


def run_rows(rows: Sequence[Row], seeds: Sequence[int], data: MTLData, factories: Factories,
             config: TrainConfig, out_dir: str | Path, lrs: Mapping[str, float] | None = None,
             records_file: str | Path | None = None,
             log: Callable[[str], None] | None = print, prefix: str | None = None
             ) -> experiments.Grid:
    """Every row x seed through :func:`mtlkit.experiments.run_one`, each on the model of the
    architecture its method is defined on (``factories[arch]``, checked on every model),
    with the learning rate ``lrs[label]`` where given (else ``config.lr``).  Records go to
    ``records_file`` as each run ends; their run ids are ``<prefix>/<run folder>``
    (``prefix`` defaults to the dataset's name), unique across problems."""
    lrs = dict(lrs or {})
    prefix = data.name if prefix is None else prefix
    runs = []
    for row in rows:
        method = row.method()
        make = checked_factory(method, factories)
        cfg = replace(config, lr=float(lrs.get(row.label, config.lr)))
        for seed in seeds:
            run = experiments.run_one(method, data, make, cfg, seed,
                                      Path(out_dir) / data.name)
            run.records["run_id"] = prefix + "/" + run.records["run_id"].astype(str)
            if log:
                log(f"{data.name:>16s} {row.label:>30s} lr {cfg.lr:g} seed {seed}: "
                    f"{run.epoch_time:.2f} s/epoch" + ("" if run.finite else "  NON-FINITE"))
            if records_file:
                results.write_records(run.records, records_file)
            runs.append(run)
    return experiments.Grid(runs, [])


def selected_records(records: pd.DataFrame, splits: Sequence[str] = ("val", "test"),
                     metrics: Sequence[str] = ("acc",)) -> pd.DataFrame:
    """The records of ``splits`` and ``metrics`` at each run's selected epoch: what a table,
    a cluster figure or a verdict reads (accuracy: the paper's metric), small enough to ship."""
    keep = (records["selected"].astype(bool) & records["split"].isin(list(splits))
            & records["metric"].isin(list(metrics)))
    return records[keep].reset_index(drop=True)


# ------------------------------------------------------------------ lr search
@dataclass
class Search:
    """The outcome of :func:`lr_search`: the chosen lr of each row and the score table."""

    chosen: dict[str, float]
    scores: pd.DataFrame  #: row, lr, val_acc (mean over tasks and search seeds), n_runs
    records: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)


def lr_search(rows: Sequence[Row], lr_grid: Sequence[float], seeds: Sequence[int],
              data: MTLData, factories: Factories, config: TrainConfig, out_dir: str | Path,
              log: Callable[[str], None] | None = print) -> Search:
    """App. B: each row with ``search`` is trained at every lr of ``lr_grid`` with the
    search ``seeds``; the lr with the best mean *validation* accuracy (at each run's
    selected epoch, averaged over tasks and seeds) is chosen.  Test numbers are never read.
    Ties go to the lr nearer ``config.lr`` (in log scale)."""
    todo = [r for r in rows if r.search]
    if not todo or len(lr_grid) < 1:
        return Search({}, pd.DataFrame(columns=["row", "lr", "val_acc", "n_runs"]))
    if len(lr_grid) == 1:  # nothing to choose: no search runs
        return Search({r.label: float(lr_grid[0]) for r in todo},
                      pd.DataFrame({"row": [r.label for r in todo], "lr": float(lr_grid[0]),
                                    "val_acc": math.nan, "n_runs": 0}))
    recs = []
    for lr in lr_grid:
        cfg = replace(config, lr=float(lr))
        grid = run_rows(todo, seeds, data, factories, cfg, Path(out_dir) / f"lr{lr:g}",
                        log=log, prefix=f"{data.name}/lr{lr:g}")
        # the lr of the run, from here: a strategy's own "lr" (UW, GradNorm, BanditMTL)
        # shadows the optimiser's in the records' hparams
        recs.append(grid.records.assign(lr=float(lr)))
    rec = pd.concat(recs, ignore_index=True)
    val = rec[(rec["split"] == "val") & (rec["metric"] == "acc") & rec["selected"].astype(bool)]
    per_run = val.groupby(["method", "lr", "run_id"])["value"].mean().reset_index()
    scores = per_run.groupby(["method", "lr"])["value"].agg(["mean", "count"]).reset_index()
    scores.columns = ["row", "lr", "val_acc", "n_runs"]
    chosen = {}
    for label, g in scores.groupby("row", sort=False):
        g = g.assign(dist=(g["lr"].map(math.log) - math.log(config.lr)).abs())
        best = g.sort_values(["val_acc", "dist"], ascending=[False, True]).iloc[0]
        chosen[label] = float(best["lr"])
    return Search(chosen, scores, rec)


# ------------------------------------------------------------------ figures' tables
def weights_frame(grid: experiments.Grid, dataset: str, labels: Sequence[str],
                  max_points: int = 400) -> pd.DataFrame:
    """Per-step task weights of the first seed's run of each of ``labels`` (§6.8, Figs
    8–9, 12), thinned to at most ``max_points`` steps each: columns dataset, method, step,
    weight/<task>."""
    steps = grid.steps()
    parts = []
    for label in labels:
        df = steps.get(label)
        if df is None:
            continue
        cols = ["step"] + [c for c in df.columns if c.startswith("weight/")]
        every = max(1, math.ceil(len(df) / max_points))
        parts.append(df[cols].iloc[::every].assign(dataset=dataset, method=label))
    if not parts:
        return pd.DataFrame(columns=["dataset", "method", "step"])
    out = pd.concat(parts, ignore_index=True)
    return out[["dataset", "method"] + [c for c in out.columns if c not in ("dataset", "method")]]
