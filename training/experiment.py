"""The paper's comparison as one rerunnable command: every method on the same split and vectors.

Results are written after every finished run, so an interrupted grid still leaves a report of
what did finish.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.console import Console

from fmlc.graph import build_adjacency, label_statistics
from fmlc.metrics import evaluate, tune_thresholds
from training import peer
from training.data import Record, load_path, split_records
from training.experiment_report import summarise, write_report
from training.trainer import PRESETS, SETTING_NAMES, Prepared, TrainConfig, TrainResult, fit, prepare, save_scores
from training.word2vec import load_vectors, save_vectors

# method name → the TrainConfig fields that define it
METHODS: dict[str, dict] = {
    "linear": {"model": "linear"},
    "caml": {"model": "caml", "loss": "bce"},
    "zacnn": {"model": "zacnn", "loss": "bce"},
    "bigru-lwan": {"model": "bigru-lwan", "loss": "bce"},
    "fmlc-bce": {"model": "fmlc", "loss": "bce"},
    "fmlc-asl": {"model": "fmlc", "loss": "asl"},
    "fmlc-asl-identity": {"model": "fmlc", "loss": "asl", "graph": "identity"},
    # The default model: linear TF-IDF and FMLC/ASL blended per label on validation (fmlc.models.wide).
    "fmlc-wide": {"model": "fmlc-wide", "loss": "asl"},
}
CONVOLUTIONAL = ("caml", "zacnn")
PEER_METHODS = ("linear", "bigru-lwan", "caml")
SPLIT_SEED = 0  # every method, seed and variant trains on this one split
# The paper's claim (FMLC/ASL over the best earlier method, in points), which each report sets its gains beside.
PAPER_GAINS = {"macro_f1": 3.1, "tail_macro_f1": 6.9}
console = Console(stderr=True)


@dataclass
class ExperimentConfig:
    data: str
    out: str
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    seeds: int = 3
    preset: str = "paper"  # the TrainConfig preset every run starts from; `base` overrides it
    epochs_recurrent: int | None = None  # None: the preset's epochs
    epochs_convolutional: int = 30
    quick: bool = False
    max_docs: int | None = None
    parent_labels: str | None = None  # separator: "a-b" also gets the label "a"
    use_given_split: bool = False
    peer: bool = False
    peer_epochs: int | None = None
    base: dict = field(default_factory=dict)  # TrainConfig overrides shared by every method

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
        if self.seeds < 1:
            raise ValueError("seeds must be >= 1")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}: choose one of {', '.join(PRESETS)}")
        if self.epochs_recurrent is None:
            self.epochs_recurrent = TrainConfig.from_preset(self.preset).epochs

    def base_config(self) -> TrainConfig:
        return TrainConfig.from_preset(self.preset, **self.base)


def add_parent_labels(records: list[Record], sep: str) -> list[Record]:
    out = []
    for r in records:
        parents = {lab.split(sep, 1)[0] for lab in r.labels if sep in lab}
        out.append(replace(r, labels=tuple(sorted(set(r.labels) | parents))))
    return out


def subset(records: list[Record], n: int, seed: int) -> list[Record]:
    idx = np.random.default_rng(seed).permutation(len(records))[:n]
    return [records[i] for i in sorted(idx)]


def load_splits(cfg: ExperimentConfig) -> tuple[dict[str, list[Record]], dict]:
    loaded = load_path(cfg.data)
    records = loaded.records
    info: dict = {"docs_loaded": len(records), "duplicates_reported": len(loaded.duplicates)}
    if cfg.max_docs and len(records) > cfg.max_docs:
        records = subset(records, cfg.max_docs, 0)
        info["subset"] = cfg.max_docs
    if cfg.parent_labels:
        records = add_parent_labels(records, cfg.parent_labels)
        info["parent_labels"] = cfg.parent_labels
    splits = split_records(records, seed=SPLIT_SEED, use_given=cfg.use_given_split)
    info["split_sizes"] = {k: len(v) for k, v in splits.items()}
    return splits, info


def train_config(cfg: ExperimentConfig, method: str, seed: int) -> TrainConfig:
    epochs = cfg.epochs_convolutional if method in CONVOLUTIONAL else cfg.epochs_recurrent
    if cfg.quick:
        epochs = min(epochs, 2)
    return TrainConfig.from_preset(cfg.preset, **(cfg.base | METHODS[method] | {"seed": seed, "epochs": epochs}))


def _inference_rate(result_net_cfg: TrainConfig, prep: Prepared, result) -> float:
    from fmlc.predictor import Predictor

    predictor = Predictor(result.artifact, device=result_net_cfg.device)
    tokens = prep.tokens["test"][:2000]
    t0 = time.perf_counter()
    predictor.scores(tokens, batch_size=64)
    return len(tokens) / (time.perf_counter() - t0)


def run(cfg: ExperimentConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    splits, info = load_splits(cfg)
    console.print(f"[bold]experiment[/] {cfg.data}: {info}")
    base_cfg = cfg.base_config()
    results_path = out / "results.json"
    old = json.loads(results_path.read_text()) if results_path.exists() else {}
    info["split_id"] = split_id(splits)
    # A resumed grid must be on the split its finished runs had (the split rules can change between
    # versions, e.g. when repeated texts began to be kept together).
    old_split = old.get("data", {}).get("split_id") or saved_split_id(out / "split")
    old_sizes = old.get("data", {}).get("split_sizes")
    if old.get("runs") and old_split is None and old_sizes and old_sizes != info["split_sizes"]:
        # Runs from before the split was fingerprinted: their sizes still show a split of other rules,
        # and a run added here would not be comparable with them.
        raise ValueError(f"{results_path} holds runs on a split of {old_sizes} documents; the data now splits "
                         f"{info['split_sizes']}: write new runs to another --out")
    resuming = _same_grid(old.get("config", {}), asdict(cfg)) and old_split in (None, info["split_id"])
    if old and not resuming and old_split not in (None, info["split_id"]):
        console.print("[yellow]the split differs from the one in results.json: starting the grid afresh[/]")
    prep, vectors_id = prepare_reusing_vectors(splits, base_cfg, out / "split" / "vectors.npz", reuse=resuming)
    info["labels"] = len(prep.labels)
    info["tail_labels"] = int(sum(c < base_cfg.tail_below for c in prep.train_counts))
    info["notes"] = prep.notes
    info["label_graph"] = graph_info(prep.y["train"], prep.labels, base_cfg)
    write_split(prep, splits, out / "split")
    results: dict = {"config": asdict(cfg), "data": info, "labels": prep.labels, "train_counts": prep.train_counts,
                     "runs": {}}
    if resuming:  # keep finished runs of the same configuration
        results["runs"] = old.get("runs", {})
        if "peer" in old and "skipped" not in old["peer"]:
            results["peer"] = old["peer"]
            if "peer_vectors" in old:
                results["peer_vectors"] = old["peer_vectors"]
    # FMLC/ASL is the wide & deep model's FMLC path, trained the same way (tests/test_wide.py): when a
    # grid asks for both, the path of the wide run stands for it, so the longest run is not made twice.
    shares_path = "fmlc-wide" in cfg.methods and "fmlc-asl" in cfg.methods
    order = sorted(cfg.methods, key=lambda m: shares_path and m == "fmlc-asl")
    for seed in range(cfg.seeds):
        for method in order:
            key = f"{method}/seed{seed}"
            if key in results["runs"]:
                continue
            tcfg = train_config(cfg, method, seed)
            console.print(f"[bold cyan]{key}[/]: {tcfg.model}/{tcfg.loss}/{tcfg.graph.mode}, {tcfg.epochs} epochs")
            t0 = time.perf_counter()
            with_path = shares_path and method == "fmlc-wide" and f"fmlc-asl/seed{seed}" not in results["runs"]
            result = fit(prep, tcfg, fmlc_path=with_path)
            results["runs"][key] = _run_record(method, seed, tcfg, prep, result, vectors_id, time.perf_counter() - t0)
            save_scores(out / "split" / "scores" / f"{method}-seed{seed}.npz", result, prep)
            if result.fmlc_path is not None:
                alone = train_config(cfg, "fmlc-asl", seed)
                results["runs"][f"fmlc-asl/seed{seed}"] = _run_record(
                    "fmlc-asl", seed, alone, prep, result.fmlc_path, vectors_id,
                    results["runs"][key]["train_seconds"]) | {"trained_as": f"the FMLC path of {key}"}
                save_scores(out / "split" / "scores" / f"fmlc-asl-seed{seed}.npz", result.fmlc_path, prep)
            results_path.write_text(json.dumps(results, ensure_ascii=False, indent=1))
        if seed == 0 and cfg.peer and "peer" not in results:
            # The external reference runs once, right after the first seed, so that a grid cut short
            # still has it.
            results["peer"] = run_peer(cfg, prep, out)
            results["peer_vectors"] = vectors_id  # split/embeddings.txt came from these
            results_path.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    results["settings"] = report_settings(results["config"]) | {"machine": machine()}
    results["summary"] = summarise(results)
    results_path.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    write_report(results, out)
    return results


def _run_record(method: str, seed: int, tcfg: TrainConfig, prep: Prepared, result: TrainResult, vectors_id: str,
                train_seconds: float) -> dict:
    """What results.json keeps of one run."""
    test = result.metrics["test"]
    record = {
        "method": method, "seed": seed, "tuned": test["tuned"], "threshold_0.5": test["threshold_0.5"],
        "valid_macro_f1": result.metrics["valid"]["tuned"]["all"]["macro_f1"],
        "epochs_run": len(result.history), "seconds_per_epoch": result.seconds_per_epoch, "vectors": vectors_id,
        "history": [{"epoch": h["epoch"], "loss": h["loss"], "valid_macro_f1": h["valid_macro_f1_tuned"]}
                    for h in result.history if "loss" in h],  # the linear model has no epochs
        "train_seconds": train_seconds,
        "inference_docs_per_s": _inference_rate(tcfg, prep, result),
    }
    if "components" in result.metrics:  # what the wide & deep model's two paths score alone
        record["valid_tail_macro_f1"] = result.metrics["valid"]["tuned"]["tail"]["macro_f1"]
        record["components"] = _component_scores(result.metrics["components"])
    console.print(f"  {method}: test macro-F1 {test['tuned']['all']['macro_f1']:.4f} tail "
                  f"{test['tuned']['tail']['macro_f1']:.4f} micro {test['tuned']['all']['micro_f1']:.4f}")
    return record


def _component_scores(components: dict) -> dict:
    """Macro-F1 and tail macro-F1 (tuned thresholds) of each path of a wide & deep run, and its blend."""
    return {"blend": components["blend"]} | {
        path: {split: {"macro_f1": components[path][split]["all"]["macro_f1"],
                       "tail_macro_f1": components[path][split]["tail"]["macro_f1"]} for split in ("valid", "test")}
        for path in ("linear", "fmlc", "one weight")}


def machine() -> dict:
    """What the grid's speeds were measured on."""
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def report_settings(config: dict) -> dict:
    """The settings a report names, resolved from a grid's recorded ExperimentConfig (results["config"])."""
    base = config.get("base", {})
    preset = config.get("preset", "paper")  # grids from before presets ran the paper's schedule
    tc = TrainConfig.from_preset(preset, **{k: v for k, v in base.items() if k in SETTING_NAMES}).settings()
    shown = ("embed_dim", "hidden", "graph_dim", "lr", "lr_schedule", "warmup_epochs", "batch_size", "patience",
             "tail_below")
    return {"preset": preset, "changed": sorted(k for k in ("lr", "batch_size", "patience") if k in base),
            **{k: tc[k] for k in shown}, "epochs_recurrent": config["epochs_recurrent"],
            "epochs_convolutional": config["epochs_convolutional"], "split_seed": SPLIT_SEED,
            "paper_epochs": PRESETS["paper"]["epochs"], "paper_gains": PAPER_GAINS}


def rerender(out: Path, *, peer: bool = False, graph: bool = False) -> dict:
    """Rewrite report.md, the plots and the summary from a grid's results.json (e.g. of a grid still
    running or cut short). `peer` scores LibMultiLabel's saved outputs (out/peer/*.npz) again;
    `graph` recomputes the label-graph statistics from out/split. The machine is kept from the
    results; grids that did not record it say so."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    if peer:
        # Methods whose outputs are not on disk (they are not committed) keep their stored scores.
        results["peer"] = {**results.get("peer", {}), **rescore_peer(out)}
    if graph:
        results["data"]["label_graph"] = graph_info_from_split(out)
    results["settings"] = report_settings(results["config"]) | {
        "machine": results.get("settings", {}).get("machine")}
    results["summary"] = summarise(results)
    (out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    write_report(results, out)
    return results


def prepare_reusing_vectors(splits: dict[str, list[Record]], cfg: TrainConfig, path: Path,
                            reuse: bool) -> tuple[Prepared, str]:
    """prepare() on the word2vec vectors saved at `path` when `reuse` is set and they exist, else on new
    ones, saved there. word2vec with several workers is not deterministic, so without this a resumed
    grid would train its remaining runs on other vectors than its first ones. Also returns a short
    fingerprint of the embedding matrix, which each run records."""
    vectors = load_vectors(path) if reuse and path.exists() else None
    prep = prepare(splits, cfg, vectors=vectors)
    if vectors is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_vectors(path, prep.vectors)
    return prep, hashlib.sha256(prep.embeddings.tobytes()).hexdigest()[:12]


def split_id(splits: dict[str, Sequence[Record]]) -> str:
    """A short fingerprint of which record ids are in which split."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        digest.update(json.dumps([name, [r.id for r in splits[name]]], ensure_ascii=False).encode())
    return digest.hexdigest()[:12]


def saved_split_id(folder: Path) -> str | None:
    """split_id of a split folder written by write_split, None when there is none."""
    if not all((folder / f"{name}.jsonl").exists() for name in ("train", "valid", "test")):
        return None
    ids = {}
    for name in ("train", "valid", "test"):
        with open(folder / f"{name}.jsonl", encoding="utf-8") as fh:
            ids[name] = [Record(id=json.loads(line)["id"], text="", labels=()) for line in fh if line.strip()]
    return split_id(ids)


def _same_grid(a: dict, b: dict) -> bool:
    """Runs can be reused when everything that shapes a single run is unchanged; the number of seeds
    and the peer switch only decide how many runs there are."""
    ignore = {"seeds", "peer", "peer_epochs", "methods"}
    # Grids from before presets existed ran the paper's constant-rate schedule.
    a, b = {"preset": "paper"} | a, {"preset": "paper"} | b
    return {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


def graph_info(y_train: np.ndarray, labels: list[str], cfg: TrainConfig) -> dict:
    """What the label graph built from this training split looks like (for the report)."""
    graph_cfg = cfg.graph
    adjacency = build_adjacency(y_train, graph_cfg)
    off_diagonal = adjacency.sum(axis=1) - np.diag(adjacency)
    return {"config": graph_cfg.to_dict(), **label_statistics(y_train, adjacency, cfg.tail_below),
            "with_neighbours": [lab for lab, w in zip(labels, off_diagonal, strict=True) if w > 0]}


def graph_info_from_split(out: Path) -> dict:
    """graph_info for a finished grid, from its split folder (no tokenising, no vectors)."""
    from fmlc.metrics import to_matrix

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    labels = results["labels"]
    rows = [json.loads(line) for line in (out / "split" / "train.jsonl").open(encoding="utf-8")]
    base = TrainConfig.from_preset(results["config"].get("preset", "paper"),
                                   **{k: v for k, v in results["config"].get("base", {}).items() if k in SETTING_NAMES})
    return graph_info(to_matrix([r["labels"] for r in rows], labels), labels, base)


def write_split(prep: Prepared, splits: dict[str, list[Record]], folder: Path) -> None:
    """The exact split, tokens and vectors, so an external library sees what our models saw."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, recs in splits.items():
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for rec, toks in zip(recs, prep.tokens[name], strict=True):
                fh.write(json.dumps({"id": rec.id, "text": rec.text, "labels": list(rec.labels), "tokens": toks},
                                    ensure_ascii=False) + "\n")
    (folder / "labels.json").write_text(json.dumps(prep.labels, ensure_ascii=False))
    with open(folder / "embeddings.txt", "w", encoding="utf-8") as fh:
        for word, vec in prep.vectors.items():
            if word in prep.vocab:
                fh.write(word + " " + " ".join(f"{x:.5f}" for x in vec) + "\n")


def run_peer(cfg: ExperimentConfig, prep: Prepared, out: Path) -> dict:
    """LibMultiLabel in its own venv (training/peer/setup_libmultilabel.sh), scored by our metrics."""
    python = peer.peer_python()
    if not python.exists():
        msg = f"{python} missing: run {peer.SETUP} first"
        console.print(f"[yellow]peer skipped[/]: {msg}")
        return {"skipped": msg}
    peer_out = out / "peer"
    cmd = peer.command(python, "--split", str(out / "split"), "--out", str(peer_out), "--methods",
                       ",".join(PEER_METHODS), "--val-metric", "Macro-F1",
                       # One thread: with two on a 2-core machine its GRU ran 5-9x slower (measured).
                       "--threads", str(cfg.base.get("threads") or 1))
    if cfg.quick:
        cmd.append("--quick")
    if cfg.peer_epochs:
        cmd += ["--epochs", str(cfg.peer_epochs)]
    console.print("[bold]peer[/]: " + " ".join(cmd))
    subprocess.run(cmd, check=True, stdout=sys.stderr, env=peer.environment())
    return score_peer(prep, peer_out)


def _as_probability(method: str, scores: np.ndarray) -> np.ndarray:
    scores = scores.astype(np.float64)
    return 1.0 / (1.0 + np.exp(-scores)) if method == "linear" else scores


# LibMultiLabel's linear scores are liblinear decision values, mapped through a sigmoid onto the
# threshold grid. They are not probabilities: negatives sit around 0.2-0.3, inside the grid, so a
# label whose one validation positive scores below most negatives gets a threshold that marks nearly
# every test document (seen on ccks2019_fin: one label, 2,070 of 2,261 test documents, micro-F1 91.8
# -> 64.7). Its tuned row therefore falls back to the library's own rule for labels whose best
# validation F1 is below this.
PEER_LINEAR_MIN_F1 = 0.1


def score_peer(prep: Prepared, peer_out: Path) -> dict:
    return _score_peer_outputs(peer_out, prep.labels, prep.train_counts, {
        name: (prep.ids[name], prep.y[name]) for name in ("valid", "test")})


def rescore_peer(out: Path) -> dict:
    """Score LibMultiLabel's saved outputs again from the split folder (no tokenising, no vectors)."""
    from fmlc.metrics import to_matrix

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    labels = json.loads((out / "split" / "labels.json").read_text(encoding="utf-8"))
    if labels != results["labels"]:
        raise ValueError(f"{out / 'split'} does not hold the split of {out / 'results.json'}")
    truth = {}
    for name in ("valid", "test"):
        rows = [json.loads(line) for line in (out / "split" / f"{name}.jsonl").open(encoding="utf-8")]
        truth[name] = ([r["id"] for r in rows], to_matrix([r["labels"] for r in rows], labels))
    return _score_peer_outputs(out / "peer", labels, results["train_counts"], truth)


def _score_peer_outputs(peer_out: Path, labels: list[str], train_counts: list[int],
                        truth: dict[str, tuple[list[str], np.ndarray]]) -> dict:
    scored = {}
    index = {i: n for n, i in enumerate(truth["test"][0])}
    for method in PEER_METHODS:
        npz = peer_out / f"peer_{method}.npz"
        if not npz.exists():
            continue
        data = np.load(npz, allow_pickle=False)
        if list(data["labels"]) != list(labels):
            raise ValueError(f"{npz}: label columns differ from the split's labels.json")
        y = truth["test"][1][[index[str(i)] for i in data["ids"]]]
        scores = _as_probability(method, data["scores"])
        # "threshold_0.5" is the library's own decision rule: 0.5 on probabilities, 0 on the linear
        # SVM's decision values (which the sigmoid above maps to 0.5).
        entry = {"threshold_0.5": evaluate(y, scores, 0.5, train_counts)}
        if "valid_scores" in data.files:
            vindex = {i: n for n, i in enumerate(truth["valid"][0])}
            vy = truth["valid"][1][[vindex[str(i)] for i in data["valid_ids"]]]
            min_f1 = PEER_LINEAR_MIN_F1 if method == "linear" else 0.0
            tuned = tune_thresholds(vy, _as_probability(method, data["valid_scores"]), min_f1=min_f1)
            entry["tuned"] = evaluate(y, scores, tuned, train_counts)
            entry["tuned_min_valid_f1"] = min_f1
        meta = peer_out / f"peer_{method}.json"
        entry["meta"] = json.loads(meta.read_text()) if meta.exists() else {}
        scored[method] = entry
    return scored
