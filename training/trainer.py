"""One training loop for every model: prepare the data once, fit, tune thresholds, save the artifact."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from fmlc import artifact as artifact_io
from fmlc.batching import length_chunks, pad_batch
from fmlc.drift import build_baseline, label_groups
from fmlc.graph import GraphConfig, build_adjacency, describe
from fmlc.losses import make_loss
from fmlc.metrics import evaluate, to_matrix, tune_thresholds
from fmlc.models import FMLCWide, LinearTfidf, ModelConfig, build_model
from fmlc.text import Tokenizer
from fmlc.vocab import Vocab
from training.synth import LABEL_GROUPS
from training.word2vec import embedding_matrix, phrase_vector, train_vectors


class LabelledText(Protocol):
    id: str
    text: str
    labels: Sequence[str]


LR_SCHEDULES = ("plateau", "cosine", "constant")


# The training settings under their flat names: what `fmlc train`'s options, the presets, the experiment's
# methods and variants, and the artifact's record use. The network's and the label graph's settings
# among them live in ModelConfig and GraphConfig; TrainConfig holds one of each.
NETWORK_SETTINGS = ("model", "embed_dim", "hidden", "attn_dim", "graph_dim", "graph_steps", "embed_dropout",
                    "attn_dropout", "graph_dropout", "filters", "kernel_size", "freeze_embeddings")
GRAPH_SETTINGS = {"graph": "mode", "graph_threshold": "threshold", "graph_min_count": "min_count",
                  "graph_neighbour_weight": "neighbour_weight"}
# The vocabulary and label counts come from the data (model_config()); these stand in until then.
_SIZED_BY_DATA = {"vocab_size": 1, "n_labels": 1}


def _default_network() -> ModelConfig:
    # FMLC wide & deep: FMLC/ASL with the linear TF-IDF model blended in per label on validation
    # (docs/decisions/0085-wide-and-deep-default.md); `--model fmlc` is the paper's model alone.
    return ModelConfig(model="fmlc-wide", **_SIZED_BY_DATA)


@dataclass
class TrainConfig:
    """Every training setting and its default; `fmlc train` and the experiment grid take theirs from here.
    The network's settings are a ModelConfig and the label graph's a GraphConfig, whose defaults are
    those of training too. The defaults were chosen from measurements (reports/defaults/,
    docs/decisions/0040-training-defaults.md); PRESETS["paper"] holds the paper's settings.

    `TrainConfig.of(embed_dim=64, graph_threshold=0.1, ...)` and `from_preset` take the flat names
    (NETWORK_SETTINGS, GRAPH_SETTINGS and this class's own fields); `settings()` gives them back."""

    network: ModelConfig = field(default_factory=_default_network)
    graph: GraphConfig = field(default_factory=GraphConfig)
    loss: str = "asl"
    epochs: int = 30  # the most epochs; early stopping on validation macro-F1 usually ends a run sooner
    batch_size: int = 32
    lr: float = 1e-3  # Adam's peak learning rate (after warm-up)
    lr_schedule: str = "plateau"  # plateau: multiply by plateau_factor after an epoch without a better
    # validation macro-F1; cosine: decay to 0 over `epochs`; constant
    warmup_epochs: float = 1.0  # linear warm-up from 0 over this many epochs (0: none)
    plateau_factor: float = 0.5
    patience: int = 3  # epochs without a better validation macro-F1 before stopping
    preset: str = "default"  # the PRESETS entry these settings started from (recorded in the artifact)
    seed: int = 0
    embedding_init: str = "word2vec"  # or "random": small normal vectors, to measure what pretraining buys
    asl_gamma_neg: float = 2.0
    asl_gamma_pos: float = 0.0
    asl_margin: float = 0.05
    asl_detach_focusing: bool = True  # see fmlc.losses.AsymmetricLoss
    grad_clip: float = 5.0
    max_len: int = 256
    vocab_min_count: int = 2
    vocab_max_size: int = 50_000
    w2v_epochs: int = 5
    tail_below: int = 100
    linear_c: float = 4.0
    threads: int | None = None
    device: str | None = None
    user_dict: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.loss not in ("asl", "bce"):
            raise ValueError(f"unknown loss {self.loss!r}: choose 'asl' or 'bce'")
        if self.embedding_init not in ("word2vec", "random"):
            raise ValueError(f"unknown embedding_init {self.embedding_init!r}: choose 'word2vec' or 'random'")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}")
        if self.warmup_epochs < 0 or not 0 < self.plateau_factor <= 1:
            raise ValueError("warmup_epochs must be >= 0 and plateau_factor in (0, 1]")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}: choose one of {', '.join(PRESETS)}")

    @classmethod
    def of(cls, **settings: object) -> TrainConfig:
        """A TrainConfig from flat setting names; the ones not given keep their defaults."""
        unknown = sorted(set(settings) - set(SETTING_NAMES))
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {', '.join(SETTING_NAMES)}")
        network = {k: v for k, v in settings.items() if k in NETWORK_SETTINGS}
        graph = {GRAPH_SETTINGS[k]: v for k, v in settings.items() if k in GRAPH_SETTINGS}
        own = {k: v for k, v in settings.items() if k not in NETWORK_SETTINGS and k not in GRAPH_SETTINGS}
        return cls(network=replace(_default_network(), **network), graph=GraphConfig(**graph), **own)

    @classmethod
    def from_preset(cls, preset: str = "default", **overrides: object) -> TrainConfig:
        """The preset's settings, then `overrides` (flat names; None values are ignored: "not given")."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls.of(**(PRESETS[preset] | given | {"preset": preset}))

    def settings(self) -> dict:
        """Every setting under its flat name (the inverse of `of`)."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("network", "graph")}
        return ({name: getattr(self.network, name) for name in NETWORK_SETTINGS}
                | {flat: getattr(self.graph, name) for flat, name in GRAPH_SETTINGS.items()} | own)

    @property
    def model(self) -> str:
        """The network's name (fmlc-wide, fmlc, bigru-lwan, caml, zacnn or linear)."""
        return self.network.model


SETTING_NAMES: tuple[str, ...] = (*NETWORK_SETTINGS, *GRAPH_SETTINGS,
                                  *(f.name for f in fields(TrainConfig) if f.name not in ("network", "graph")))


# Named starting points. "paper": the paper's model (FMLC alone) and optimiser settings (Adam at a
# constant 1e-4 for 10 epochs, batch 32), for reproducing it. "small": the default schedule at 64
# dimensions, a peak rate of 3e-3 and at most 15 epochs, which trains in a few minutes on a laptop
# CPU (the demo uses it; at 64 dimensions 1e-3 was still climbing at the 15th epoch,
# reports/defaults/synth3000).
PRESETS: dict[str, dict] = {
    "default": {},
    "paper": {"model": "fmlc", "lr": 1e-4, "lr_schedule": "constant", "warmup_epochs": 0.0, "epochs": 10,
              "batch_size": 32, "patience": 3},
    "small": {"embed_dim": 64, "hidden": 64, "attn_dim": 64, "graph_dim": 64, "filters": 64, "max_len": 128,
              "epochs": 15, "lr": 3e-3},
}


class LearningRate:
    """Adam's learning rate per step: linear warm-up, then the schedule. `epoch_end` is told each
    epoch's validation result, which the plateau schedule needs."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.cfg = cfg
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.warmup_steps = round(cfg.warmup_epochs * self.steps_per_epoch)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.scale = 1.0  # what the plateau reductions left of the peak

    def at(self, step: int) -> float:
        """The learning rate for optimiser step `step` (0-based, counted over the whole run)."""
        lr = self.cfg.lr * self.scale
        if step < self.warmup_steps:
            return lr * (step + 1) / self.warmup_steps
        if self.cfg.lr_schedule == "cosine":
            progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
            return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return lr

    def epoch_end(self, improved: bool) -> None:
        if self.cfg.lr_schedule == "plateau" and not improved:
            self.scale *= self.cfg.plateau_factor


def still_improving(history: list[dict], patience: int) -> str | None:
    """A note when the best validation epoch is the last one run: the epoch cap, not early stopping,
    ended training, and more epochs may help. None otherwise."""
    epochs = [h for h in history if "valid_macro_f1_tuned" in h]
    if len(epochs) < 2:
        return None
    best = max(epochs, key=lambda h: (h["valid_macro_f1_tuned"], -h["epoch"]))
    last = epochs[-1]["epoch"]
    if best["epoch"] != last:
        return None
    more = max(patience, math.ceil(last / 2))
    return (f"validation macro-F1 was still improving at the last epoch ({last}, "
            f"{best['valid_macro_f1_tuned']:.4f}): training stopped at the epoch cap, not by early stopping. "
            f"Run about {more} more epochs (--epochs {last + more}); early stopping ends the run once "
            f"validation stops improving.")


@dataclass
class Prepared:
    """Everything derived from the data that every method shares: tokens, labels, vocabulary, vectors."""

    tokenizer: Tokenizer
    labels: list[str]
    train_counts: list[int]
    tokens: dict[str, list[list[str]]]
    y: dict[str, np.ndarray]
    ids: dict[str, list[str]]
    vocab: Vocab
    vectors: dict[str, np.ndarray]
    embeddings: np.ndarray
    fingerprint: str
    notes: list[str] = field(default_factory=list)


def fingerprint(records: Sequence[LabelledText]) -> str:
    digest = hashlib.sha256()
    for r in records:
        digest.update(json.dumps([r.id, r.text, sorted(r.labels)], ensure_ascii=False).encode())
    return digest.hexdigest()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare(splits: dict[str, Sequence[LabelledText]], cfg: TrainConfig,
            vectors: dict[str, np.ndarray] | None = None) -> Prepared:
    """Tokenise every split, fix the label set from train, build vocabulary and word2vec vectors."""
    for name in ("train", "valid"):
        if not splits.get(name):
            raise ValueError(f"the '{name}' split is empty; give at least a few documents for it")
    tokenizer = Tokenizer(user_dict=cfg.user_dict)
    tokens = {name: [tokenizer.tokenize(r.text) for r in tqdm(recs, desc=f"tokenise {name}", disable=not cfg.progress,
                                                               leave=False)]
              for name, recs in splits.items()}
    counts = Counter(lab for r in splits["train"] for lab in set(r.labels))
    labels = sorted(counts)
    notes = []
    unseen = {lab for name, recs in splits.items() if name != "train" for r in recs for lab in r.labels} - set(counts)
    if unseen:
        notes.append(f"{len(unseen)} labels occur outside train only and cannot be predicted: "
                     f"{sorted(unseen)[:10]}")
    vocab = Vocab.build(tokens["train"], min_count=cfg.vocab_min_count, max_size=cfg.vocab_max_size)
    if vectors is None:
        all_docs = [doc for docs in tokens.values() for doc in docs]
        vectors = train_vectors(all_docs, dim=cfg.network.embed_dim, seed=cfg.seed, epochs=cfg.w2v_epochs)
    embeddings, coverage = embedding_matrix(vocab, vectors, cfg.network.embed_dim, seed=cfg.seed)
    notes.append(f"vocabulary {len(vocab)} tokens, {coverage:.1%} with word2vec vectors")
    return Prepared(
        tokenizer=tokenizer, labels=labels, train_counts=[counts[lab] for lab in labels], tokens=tokens,
        y={name: to_matrix([r.labels for r in recs], labels) for name, recs in splits.items()},
        ids={name: [r.id for r in recs] for name, recs in splits.items()},
        vocab=vocab, vectors=vectors, embeddings=embeddings, fingerprint=fingerprint(splits["train"]), notes=notes,
    )


def model_config(cfg: TrainConfig, prep: Prepared) -> ModelConfig:
    """The network's configuration, sized by the prepared data."""
    return replace(cfg.network, vocab_size=len(prep.vocab), n_labels=len(prep.labels))


@dataclass
class TrainResult:
    artifact: artifact_io.Artifact
    metrics: dict
    history: list[dict]
    seconds_per_epoch: float
    path: Path | None = None
    version: str | None = None
    # fit(..., fmlc_path=True) of the wide & deep model: its FMLC path as a model of its own, which is
    # the model `--model fmlc` trains on the same prepared data and seed (tests/test_wide.py).
    fmlc_path: TrainResult | None = None
    # Probabilities [N, L] by split ("valid", "test") and, for the wide & deep model, by path
    # ("valid/linear", "test/fmlc", ...): what a blend or threshold rule can be studied on without training again.
    scores: dict[str, np.ndarray] = field(default_factory=dict)


def save_scores(path: Path, result: TrainResult, prep: Prepared) -> None:
    """A run's probabilities (result.scores), the true labels ("y/valid", "y/test"), the label names and
    their training counts (which labels are tail), as one .npz (plain arrays: np.load reads it without pickle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = {f"y/{split}": prep.y[split].astype(np.uint8) for split in ("valid", "test") if split in prep.y}
    np.savez_compressed(path, labels=np.asarray(prep.labels), train_counts=np.asarray(prep.train_counts),
                        **result.scores, **truth)


def _init_model(cfg: TrainConfig, prep: Prepared) -> tuple[torch.nn.Module, dict]:
    net = build_model(model_config(cfg, prep))
    graph_summary: dict = {}
    core = net.deep if cfg.model == "fmlc-wide" else net  # the network the steps below set up
    if hasattr(core, "embed"):
        # "random": every token gets the N(0, 0.1) draw that tokens without a word2vec vector get.
        table = prep.embeddings if cfg.embedding_init == "word2vec" else \
            embedding_matrix(prep.vocab, {}, cfg.network.embed_dim, seed=cfg.seed)[0]
        core.embed.load_vectors(torch.from_numpy(table))
    if cfg.model in ("fmlc", "fmlc-wide"):
        adjacency = build_adjacency(prep.y["train"], cfg.graph)
        core.set_adjacency(torch.from_numpy(adjacency))
        graph_summary = describe(adjacency, prep.labels) | {"config": cfg.graph.to_dict()}
    if cfg.model == "zacnn":
        rng = np.random.default_rng(cfg.seed)
        rows = []
        for name in prep.labels:
            vec = phrase_vector(prep.tokenizer.tokenize(name), prep.vectors, cfg.network.embed_dim)
            rows.append(vec if vec is not None else rng.normal(0, 0.1, cfg.network.embed_dim).astype(np.float32))
        net.set_label_vectors(torch.from_numpy(np.stack(rows)))
    return net, graph_summary


def _batches(encoded: list[list[int]], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed shuffled batches: sort within pools of 50 batches so padding stays small
    while the order of batches is still random every epoch."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        block = sorted(order[start : start + pool], key=lambda i: len(encoded[i]))
        batches.extend(block[i : i + batch_size] for i in range(0, len(block), batch_size))
    rng.shuffle(batches)
    return batches


def _to_artifact(cfg: TrainConfig, prep: Prepared, net: torch.nn.Module, thresholds: np.ndarray,
                 graph_summary: dict, metrics: dict) -> artifact_io.Artifact:
    meta = {"train_config": cfg.settings() | {"device": None, "threads": None, "progress": None},
            "data_fingerprint": prep.fingerprint, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "notes": prep.notes}
    return artifact_io.Artifact(
        model_config=model_config(cfg, prep), tokenizer_config=prep.tokenizer.to_config(), labels=prep.labels,
        train_counts=prep.train_counts, vocab=prep.vocab, thresholds=thresholds,
        state_dict={k: v.detach().cpu() for k, v in net.state_dict().items()}, max_len=cfg.max_len,
        meta=meta, metrics=metrics, graph_summary=graph_summary,
    )


def fit(prep: Prepared, cfg: TrainConfig, fmlc_path: bool = False) -> TrainResult:
    """Train one model on prepared data; select the epoch by validation macro-F1 (thresholds tuned on
    validation), then report validation and test metrics at the fixed 0.5 and at tuned thresholds.
    `fmlc_path` (wide & deep only) also finishes its FMLC path as a model of its own (result.fmlc_path),
    so that a comparison gets FMLC/ASL without training it a second time."""
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.model == "linear":
        t0 = time.perf_counter()
        net = build_model(model_config(cfg, prep))
        _fit_linear(net, prep, cfg)
        history = [{"epoch": 1, "seconds": time.perf_counter() - t0}]
        return _finish(cfg, prep, net, {}, history, history[0]["seconds"])

    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net, graph_summary = _init_model(cfg, prep)
    if cfg.model == "fmlc-wide":
        # The wide path first (seconds, deterministic), then the deep path by gradient, then the blend.
        _fit_linear(net.wide, prep, cfg)
        net.to(device)
        history, seconds_per_epoch = _train_network(net.deep, prep, cfg, device)
        components, path_scores = _fit_blend(net, prep, cfg, device)
        result = _finish(cfg, prep, net, graph_summary, history, seconds_per_epoch, device)
        result.metrics["components"] = components
        result.scores |= path_scores
        if fmlc_path:  # scored on the probabilities the blend was chosen from, not predicted again
            alone = replace(cfg, network=replace(cfg.network, model="fmlc"))
            result.fmlc_path = _finish(alone, prep, net.deep, graph_summary, history, seconds_per_epoch, device,
                                       scores={split: path_scores[f"{split}/fmlc"] for split in ("valid", "test")
                                               if f"{split}/fmlc" in path_scores})
        return result
    net.to(device)
    history, seconds_per_epoch = _train_network(net, prep, cfg, device)
    return _finish(cfg, prep, net, graph_summary, history, seconds_per_epoch, device)


def _fit_linear(net: torch.nn.Module, prep: Prepared, cfg: TrainConfig) -> None:
    from training.linear_fit import fit_linear

    assert isinstance(net, LinearTfidf)
    fit_linear(net, [prep.vocab.encode(t, cfg.max_len) for t in prep.tokens["train"]], prep.y["train"],
               c=cfg.linear_c, seed=cfg.seed, progress=cfg.progress)


def _fit_blend(net: torch.nn.Module, prep: Prepared, cfg: TrainConfig,
               device: torch.device) -> tuple[dict, dict[str, np.ndarray]]:
    """Set FMLC wide & deep's blend from validation (training.wide); returns what each path
    alone, and one shared weight, score with their own tuned thresholds (for reports), and each path's
    probabilities by "split/path"."""
    from training.wide import choose_blend

    assert isinstance(net, FMLCWide)
    scores = {split: {"linear": _predict_scores(net.wide, prep, split, cfg, device),
                      "fmlc": _predict_scores(net.deep, prep, split, cfg, device)}
              for split in ("valid", "test") if split in prep.y and len(prep.y[split])}
    blend = choose_blend(prep.y["valid"], scores["valid"]["linear"], scores["valid"]["fmlc"],
                         tail=np.asarray(prep.train_counts) < cfg.tail_below, seed=cfg.seed)
    net.set_blend(torch.from_numpy(blend.weights).to(device))
    for by_path in scores.values():
        by_path["one weight"] = blend.shared * by_path["linear"] + (1 - blend.shared) * by_path["fmlc"]
    components: dict = {"blend": {"weights": blend.weights.tolist(), "shared": blend.shared,
                                  "strategy": blend.strategy, "cross_fitted": blend.cross_fitted}}
    for path in ("linear", "fmlc", "one weight"):
        thresholds = tune_thresholds(prep.y["valid"], scores["valid"][path])
        components[path] = {split: _strip(evaluate(prep.y[split], by_path[path], thresholds, prep.train_counts,
                                                   cfg.tail_below))
                            for split, by_path in scores.items()}
    path_scores = {f"{split}/{path}": by_path[path] for split, by_path in scores.items() for path in ("linear", "fmlc")}
    return components, path_scores


def _train_network(net: torch.nn.Module, prep: Prepared, cfg: TrainConfig,
                   device: torch.device) -> tuple[list[dict], float]:
    """Gradient training with early stopping on validation macro-F1 (thresholds tuned each epoch);
    leaves `net` at its best epoch. Returns the history and the mean seconds per epoch."""
    loss_fn = make_loss(cfg.loss, cfg.asl_gamma_neg, cfg.asl_gamma_pos, cfg.asl_margin,
                        cfg.asl_detach_focusing)
    optimiser = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=cfg.lr)
    encoded = [prep.vocab.encode(t, cfg.max_len) for t in prep.tokens["train"]]
    y_train = torch.from_numpy(prep.y["train"])
    rng = random.Random(cfg.seed)
    schedule = LearningRate(cfg, math.ceil(len(encoded) / cfg.batch_size))
    best_f1, best_state, best_epoch, history, epoch_seconds, global_step = -1.0, None, 0, [], [], 0
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        t0 = time.perf_counter()
        batches = _batches(encoded, cfg.batch_size, rng)
        bar = tqdm(batches, desc=f"{cfg.model}/{cfg.loss} epoch {epoch}/{cfg.epochs}", disable=not cfg.progress,
                   leave=False)
        total = 0.0
        for step, batch in enumerate(bar, start=1):
            ids, mask = pad_batch([encoded[i] for i in batch], device)
            for group in optimiser.param_groups:
                group["lr"] = schedule.at(global_step)
            global_step += 1
            loss = loss_fn(net(ids, mask).logits, y_train[batch].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            optimiser.step()
            total += loss.item()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total / step:.3f}")
        epoch_seconds.append(time.perf_counter() - t0)
        epoch_lr = schedule.at(global_step - 1)  # the rate of the epoch's last step
        valid_scores = _predict_scores(net, prep, "valid", cfg, device)
        tuned = tune_thresholds(prep.y["valid"], valid_scores)
        f1 = evaluate(prep.y["valid"], valid_scores, tuned)["all"]["macro_f1"]
        f1_fixed = evaluate(prep.y["valid"], valid_scores, 0.5)["all"]["macro_f1"]
        history.append({"epoch": epoch, "loss": total / max(1, len(batches)), "valid_macro_f1_tuned": f1,
                        "valid_macro_f1_0.5": f1_fixed, "lr": epoch_lr, "seconds": epoch_seconds[-1]})
        if cfg.progress:
            tqdm.write(f"  epoch {epoch}: loss {history[-1]['loss']:.4f}  valid macro-F1 {f1:.4f} (tuned) "
                       f"{f1_fixed:.4f} (0.5)  {epoch_seconds[-1]:.1f}s")
        improved = f1 > best_f1
        schedule.epoch_end(improved)
        if improved:
            best_f1, best_epoch = f1, epoch
            best_state = copy.deepcopy(net.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            break
    net.load_state_dict(best_state)
    for h in history:
        h["best"] = h["epoch"] == best_epoch
    return history, float(np.mean(epoch_seconds))


def _predict_scores(net: torch.nn.Module, prep: Prepared, split: str, cfg: TrainConfig,
                    device: torch.device) -> np.ndarray:
    net.eval()
    encoded = [prep.vocab.encode(t, cfg.max_len) for t in prep.tokens[split]]
    out = np.zeros((len(encoded), len(prep.labels)), dtype=np.float32)
    with torch.inference_mode():
        for chunk in length_chunks([len(e) for e in encoded], 128):
            ids, mask = pad_batch([encoded[i] for i in chunk], device)
            out[chunk] = torch.sigmoid(net(ids, mask).logits).float().cpu().numpy()
    net.train()
    return out


def _finish(cfg: TrainConfig, prep: Prepared, net: torch.nn.Module, graph_summary: dict, history: list[dict],
            seconds_per_epoch: float, device: torch.device | None = None,
            scores: dict[str, np.ndarray] | None = None) -> TrainResult:
    """`scores`: the network's probabilities by split where they are already known (the rest are predicted)."""
    device = device or torch.device("cpu")
    split_scores = dict(scores or {})
    valid_scores = split_scores.get("valid")
    if valid_scores is None:
        valid_scores = split_scores["valid"] = _predict_scores(net, prep, "valid", cfg, device)
    thresholds = tune_thresholds(prep.y["valid"], valid_scores)
    metrics: dict = {"labels": len(prep.labels), "tail_labels": int(sum(c < cfg.tail_below for c in prep.train_counts)),
                     "history": history, "seconds_per_epoch": seconds_per_epoch}
    for split in ("valid", "test"):
        if split not in prep.y or len(prep.y[split]) == 0:
            continue
        if split not in split_scores:
            split_scores[split] = _predict_scores(net, prep, split, cfg, device)
        probs = split_scores[split]
        metrics[split] = {
            "threshold_0.5": _strip(evaluate(prep.y[split], probs, 0.5, prep.train_counts, cfg.tail_below)),
            "tuned": evaluate(prep.y[split], probs, thresholds, prep.train_counts, cfg.tail_below),
        }
    art = _to_artifact(cfg, prep, net, thresholds, graph_summary, metrics)
    # The drift baseline: what the worker compares its recent predictions with.
    groups = label_groups(prep.labels, LABEL_GROUPS)
    art.drift_baseline = build_baseline(valid_scores, prep.train_counts, len(prep.y["train"]), groups).to_dict()
    return TrainResult(artifact=art, metrics=metrics, history=history, seconds_per_epoch=seconds_per_epoch,
                       scores=split_scores)


def _strip(result: dict) -> dict:
    result.pop("per_label_f1", None)
    return result


def train(splits: dict[str, Sequence[LabelledText]], cfg: TrainConfig, out: str | Path | None = None,
          prepared: Prepared | None = None) -> TrainResult:
    prep = prepared or prepare(splits, cfg)
    result = fit(prep, cfg)
    if out is not None:
        result.version = artifact_io.save(result.artifact, out)
        result.path = Path(out)
    return result
