"""Side-by-side reference run with LibMultiLabel 0.10.0 (linear one-vs-rest, BiGRU-LWAN, CAML).

Runs in its own venv (`training/peer/setup_libmultilabel.sh` creates `.peer-venv`), never in the project's,
because LibMultiLabel pins torchmetrics 0.10.3 and an old-style lightning stack. The project calls
this module through a subprocess (`training.peer.command`) and reads back plain numpy/JSON files only;
it imports nothing of the project.

Usage:
    PYTHONPATH=. .peer-venv/bin/python -m training.peer.libmultilabel --split DIR --out DIR \\
        --methods linear,bigru-lwan,caml [--epochs N] [--quick] [--rnn-dim 600] ...

Input (--split DIR): train.jsonl / valid.jsonl / test.jsonl with records
{"id", "text", "labels": [...], "tokens": [...]}, labels.json (output column order) and
embeddings.txt (`word v1 ... vd` per line) for the neural networks.

Output (--out DIR), per method M:
    peer_M.npz   scores float32 [n_test, n_labels] (columns in labels.json order), ids (unicode),
                 valid_scores / valid_ids (same for the validation split), labels (unicode)
    peer_M.json  versions, full config, epochs run, timings, LibMultiLabel's own test metrics.
Exit status: 0 all methods written, 1 some method failed (others are still written),
2 bad arguments or input files, 3 LibMultiLabel not importable in this interpreter.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PEER_PYTHON = REPO / ".peer-venv" / "bin" / "python"
METHODS = ("linear", "bigru-lwan", "caml")
QUICK_MAX_TRAIN = 600
QUICK_MAX_VALID = 600
QUICK_MAX_EPOCHS = 2
# Ranking metrics are only valid for k < number of labels (LibMultiLabel raises otherwise).
MONITOR_METRICS = ("Macro-F1", "Micro-F1", "P@1", "P@3", "P@5")
# Sentinel used for documents whose token list is empty: the RNN packs sequences of length >= 1
# and CAML's convolution needs at least one position; "<unk>" maps to LibMultiLabel's UNK row.
EMPTY_DOC_TOKEN = "<unk>"

log = logging.getLogger("peer")


class InputError(Exception):
    """Bad arguments or input files: reported without a traceback, exit status 2."""


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------


def ensure_peer_environment() -> None:
    """Make sure LibMultiLabel imports; re-run under .peer-venv when called with another Python.

    The project may invoke this file with its own interpreter by mistake; switching here gives the
    caller one command that works instead of an ImportError deep inside torch/lightning.
    """
    import warnings

    # Known, harmless library notices that would otherwise fill every log: torchmetrics 0.10.3
    # imports pkg_resources, and LibMultiLabel's Model stores its network in the hyperparameters.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", message="Attribute 'network' is an instance of `nn.Module`")
    try:
        import libmultilabel.linear
        import libmultilabel.nn.nn_utils  # noqa: F401
        return
    except ImportError as exc:
        reason = f"{type(exc).__name__}: {exc}"
    here = Path(sys.executable)
    if PEER_PYTHON.exists() and here != PEER_PYTHON and not os.environ.get("FMLC_PEER_REEXEC"):
        print(f"[peer] LibMultiLabel not importable in {here} ({reason}); re-running with {PEER_PYTHON}",
              file=sys.stderr, flush=True)
        os.environ["FMLC_PEER_REEXEC"] = "1"
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        os.execv(str(PEER_PYTHON), [str(PEER_PYTHON), "-m", "training.peer.libmultilabel", *sys.argv[1:]])
    print(
        f"[peer] error: LibMultiLabel (with its [nn] extra) is not importable in {here}: {reason}\n"
        f"[peer] create the peer venv with `training/peer/setup_libmultilabel.sh` and run this module with "
        f"{PEER_PYTHON}",
        file=sys.stderr,
    )
    sys.exit(3)


def package_versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {}
    for name in ("libmultilabel", "torch", "lightning", "torchmetrics", "liblinear-multicore",
                 "scikit-learn", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    out["python"] = sys.version.split()[0]
    return out


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------


@dataclass
class Split:
    ids: list[str]
    tokens: list[list[str]]
    labels: list[list[str]]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: list[int]) -> Split:
        return Split([self.ids[i] for i in idx], [self.tokens[i] for i in idx],
                     [self.labels[i] for i in idx])


def read_split(path: Path, known_labels: set[str]) -> Split:
    if not path.is_file():
        raise InputError(f"missing split file {path}")
    ids: list[str] = []
    tokens: list[list[str]] = []
    labels: list[list[str]] = []
    unknown: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not JSON ({exc})") from None
            for key in ("id", "labels", "tokens"):
                if key not in rec:
                    raise InputError(f"{path}:{lineno}: record has no '{key}' (the peer needs the "
                                     "project's jieba tokens; it does not segment Chinese itself)")
            if not isinstance(rec["tokens"], list) or not isinstance(rec["labels"], list):
                raise InputError(f"{path}:{lineno}: 'tokens' and 'labels' must be lists")
            # Whitespace inside a token would split it again when the tokens are joined by spaces
            # for LibMultiLabel's text field, so it is replaced here once.
            toks = ["_".join(str(t).split()) for t in rec["tokens"] if str(t).strip()]
            labs = [str(x) for x in rec["labels"]]
            unknown.update(x for x in labs if x not in known_labels)
            ids.append(str(rec["id"]))
            tokens.append(toks)
            labels.append(labs)
    if unknown:
        sample = ", ".join(sorted(unknown)[:5])
        raise InputError(f"{path}: {len(unknown)} label(s) not in labels.json, e.g. {sample}")
    if not ids:
        raise InputError(f"{path} holds no records")
    if len(set(ids)) != len(ids):
        raise InputError(f"{path}: duplicate ids")
    return Split(ids, tokens, labels)


def read_labels(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"missing {path}")
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
    if isinstance(labels, dict):  # tolerate {"labels": [...]} as written by some tools
        labels = labels.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise InputError(f"{path} must be a non-empty JSON list of label names")
    if len(set(labels)) != len(labels):
        raise InputError(f"{path}: duplicate label names")
    return labels


def check_embeddings(path: Path) -> tuple[bool, int, int]:
    """Validate the embedding file; return (has word2vec header, number of vectors, dimension)."""
    if not path.is_file():
        raise InputError(f"missing embedding file {path} (needed by the neural methods)")
    n, dim, has_header = 0, None, False
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip().split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                has_header = True
                continue
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            elif len(parts) - 1 != dim:
                raise InputError(f"{path}:{lineno}: {len(parts) - 1} values, expected {dim}")
            n += 1
    if not n or dim is None:
        raise InputError(f"{path} holds no vectors")
    return has_header, n, dim


def headerless_embeddings(path: Path, has_header: bool, workdir: Path) -> Path:
    """LibMultiLabel takes the dimension from the first line, so a word2vec header ("N D") would make
    it build 1-dimensional vectors and fail; such a file is copied without its header."""
    if not has_header:
        return path
    out = workdir / "embeddings.noheader.txt"
    with path.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        src.readline()
        shutil.copyfileobj(src, dst)
    return out


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def monitor_metrics(n_labels: int, val_metric: str | None = None) -> list[str]:
    names = [m for m in MONITOR_METRICS if not m.startswith("P@") or int(m[2:]) < n_labels]
    if val_metric and val_metric not in names:
        names.append(val_metric)
    return names


def column_order(model_classes: list[str], labels: list[str]):
    """Indices that reorder LibMultiLabel's columns into labels.json order."""
    import numpy as np

    pos = {c: i for i, c in enumerate(model_classes)}
    missing = [x for x in labels if x not in pos]
    if missing:
        raise RuntimeError(f"LibMultiLabel dropped labels {missing[:5]}")
    return np.array([pos[x] for x in labels], dtype=np.int64)


def write_outputs(out_dir: Path, method: str, labels: list[str], test: Split, scores: Any,
                  valid: Split, valid_scores: Any, info: dict[str, Any]) -> None:
    """Write peer_<method>.npz/.json atomically so a reader never sees a half-written file."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float32)
    valid_scores = np.asarray(valid_scores, dtype=np.float32)
    assert scores.shape == (len(test), len(labels)), scores.shape
    assert valid_scores.shape == (len(valid), len(labels)), valid_scores.shape
    if not np.isfinite(scores).all():
        raise RuntimeError(f"{method}: non-finite test scores")
    npz = out_dir / f"peer_{method}.npz"
    tmp = npz.with_suffix(".npz.tmp")
    with tmp.open("wb") as fh:
        # str arrays keep the file loadable with allow_pickle=False (object arrays would not be).
        np.savez(fh, scores=scores, ids=np.array(test.ids, dtype=str),
                 valid_scores=valid_scores, valid_ids=np.array(valid.ids, dtype=str),
                 labels=np.array(labels, dtype=str))
    os.replace(tmp, npz)
    js = out_dir / f"peer_{method}.json"
    tmp = js.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, ensure_ascii=False, indent=2, default=_json_default), encoding="utf-8")
    os.replace(tmp, js)
    log.info("%s: wrote %s and %s", method, npz, js)


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and paths appear in configs and metric dicts.
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def data_stats(train: Split, valid: Split, test: Split, labels: list[str]) -> dict[str, Any]:
    in_train = {x for labs in train.labels for x in labs}
    return {
        "n_train": len(train), "n_valid": len(valid), "n_test": len(test), "n_labels": len(labels),
        # LibMultiLabel would normally drop labels never seen in training; the peer keeps every
        # labels.json column so scores line up with the project's, those columns just stay low.
        "labels_without_train_positives": sorted(set(labels) - in_train),
        "empty_docs": {name: sum(1 for t in s.tokens if not t)
                       for name, s in (("train", train), ("valid", valid), ("test", test))},
    }


# --------------------------------------------------------------------------------------------
# Linear (liblinear one-vs-rest on TF-IDF)
# --------------------------------------------------------------------------------------------


def run_linear(args: argparse.Namespace, labels: list[str], train: Split, valid: Split,
               test: Split) -> None:
    from libmultilabel import linear
    from libmultilabel.linear.utils import LINEAR_TECHNIQUES

    technique = args.linear_technique
    options = args.linear_options
    if args.threads and "-m" not in options.split():
        options = f"{options} -m {args.threads}".strip()
    # \S+ keeps every project token: sklearn's default pattern drops 1-character tokens, which in
    # segmented Chinese are often meaningful words (贷, 催, 骗).
    tfidf_params = {"token_pattern": r"(?u)\S+"}

    def as_dataset(split: Split, key: str) -> dict[str, Any]:
        return {"data_format": "txt", key: {"x": [" ".join(t) for t in split.tokens], "y": split.labels},
                "classes": labels}

    log.info("linear: TF-IDF + %s, liblinear options %r", technique, options or "(library default)")
    t0 = time.perf_counter()
    pre = linear.Preprocessor(tfidf_params=tfidf_params)
    tr = pre.fit_transform(as_dataset(train, "train"))
    t_pre = time.perf_counter() - t0
    t1 = time.perf_counter()
    model = LINEAR_TECHNIQUES[technique](tr["train"]["y"], tr["train"]["x"], options=options,
                                         verbose=not args.quiet)
    t_fit = time.perf_counter() - t1
    train_seconds = time.perf_counter() - t0
    order = column_order(list(pre.label_mapping), labels)

    def predict(split: Split) -> tuple[Any, Any, float]:
        s0 = time.perf_counter()
        ds = pre.transform(as_dataset(split, "test"))
        values = linear.predict_values(model, ds["test"]["x"])
        return values, ds["test"]["y"].toarray(), time.perf_counter() - s0

    v_values, v_true, _ = predict(valid)
    t_values, t_true, infer_s = predict(test)
    metrics_names = monitor_metrics(len(labels))
    info = {
        "method": "linear",
        "versions": package_versions(),
        "score_kind": "liblinear decision values (predicted positive where > 0)",
        "config": {
            "api": f"libmultilabel.linear.Preprocessor(tfidf_params=...) + "
                   f"libmultilabel.linear.utils.LINEAR_TECHNIQUES[{technique!r}] + linear.predict_values",
            "linear_technique": technique,
            "liblinear_options": options,
            "liblinear_options_effective_note": "LibMultiLabel adds '-s 1' (L2-loss SVM dual) when no "
                                                "solver is given, plus '-q' and '-m <physical cores>'",
            "tfidf_params": tfidf_params,
            "n_features": int(tr["train"]["x"].shape[1]),
            "text": "project jieba tokens joined by single spaces",
            "model_selection": "none (LibMultiLabel's linear API has no validation-split selection; "
                               "the validation split is only scored)",
            "quick": args.quick, "seed": args.seed,
        },
        "data": data_stats(train, valid, test, labels),
        # liblinear solves each binary problem to convergence: one "epoch" here = the whole fit.
        "epochs_run": 1,
        "best_epoch": 1,
        "train_seconds": round(train_seconds, 3),
        "train_seconds_breakdown": {"tfidf_fit": round(t_pre, 3), "liblinear_fit": round(t_fit, 3)},
        "seconds_per_epoch": round(train_seconds, 3),
        "inference_seconds_test": round(infer_s, 4),
        "inference_docs_per_s": round(len(test) / max(infer_s, 1e-9), 1),
        "valid_metrics": linear.compute_metrics(v_values, v_true, metrics_names),
        "test_metrics": linear.compute_metrics(t_values, t_true, metrics_names),
        "metrics_note": "LibMultiLabel's linear metrics: decision value > 0 is positive; Macro-F1 averages "
                        "over all labels.json labels (no positives and no predictions = 0)",
    }
    log.info("linear: fit %.2fs, test %s", train_seconds,
             {k: round(float(v), 4) for k, v in info["test_metrics"].items()})
    write_outputs(args.out, "linear", labels, test, t_values[:, order], valid, v_values[:, order], info)


# --------------------------------------------------------------------------------------------
# Neural networks (BiGRU-LWAN, CAML) through libmultilabel.nn
# --------------------------------------------------------------------------------------------

# Per-network settings. Network-class defaults come from the LibMultiLabel 0.10.0 source; training
# settings (learning rate, batch, patience, epoch cap, init) follow LibMultiLabel's published
# configurations for these networks (BiGRU-LWAN: EUR-Lex/Wiki10 configs; CAML: MIMIC-50 config)
# and its command-line defaults otherwise (Adam, no weight decay, max_seq_length 500,
# eval batch 256, threshold 0.5, val_metric P@1).
NN_DEFAULTS: dict[str, dict[str, Any]] = {
    "bigru-lwan": {
        "model_name": "BiGRULWAN",
        # rnn_dim is the sum of both directions; 600 = 300 per direction like the project's model.
        "network_config": {"rnn_dim": 600, "rnn_layers": 1, "embed_dropout": 0.2,
                           "encoder_dropout": 0.0, "post_encoder_dropout": 0.0},
        "init_weight": "kaiming_uniform",
        "learning_rate": 3e-4,
        "batch_size": 16,
        "epochs": 50,
        "patience": 10,
    },
    "caml": {
        "model_name": "CAML",
        # CAML has no default filter size in the class; [10] x 50 filters is the library's config.
        "network_config": {"filter_sizes": [10], "num_filter_per_size": 50, "embed_dropout": 0.2},
        "init_weight": None,  # CAML initialises its own layers with xavier_uniform
        "learning_rate": 1e-4,
        "batch_size": 16,
        "epochs": 200,
        "patience": 10,
    },
}


def nn_tokens(tokens: list[str], mode: str, lmm_tokenize: Any) -> list[str]:
    """Tokens as the network sees them.

    'whitespace' splits the space-joined project tokens again (identical to the project's view, and
    to the linear method's \\S+ pattern). 'libmultilabel' runs the library's own tokenizer on the
    same text: its \\w+ regexp drops purely numeric tokens (including 一, 三) and splits tokens at
    punctuation such as '&'.
    """
    text = " ".join(tokens)
    toks = text.split() if mode == "whitespace" else lmm_tokenize(text)
    return toks or [EMPTY_DOC_TOKEN]


def run_nn(args: argparse.Namespace, method: str, labels: list[str], train: Split, valid: Split,
           test: Split, embed_file: Path, workdir: Path) -> None:
    import lightning as L
    import numpy as np
    import torch
    from libmultilabel.nn import data_utils, nn_utils

    spec = json.loads(json.dumps(NN_DEFAULTS[method]))  # deep copy
    net_cfg: dict[str, Any] = spec["network_config"]
    if method == "bigru-lwan":
        net_cfg["rnn_dim"] = args.rnn_dim
    lr = args.lr if args.lr is not None else spec["learning_rate"]
    batch_size = args.batch_size or spec["batch_size"]
    patience = args.patience if args.patience is not None else spec["patience"]
    epochs = args.epochs or spec["epochs"]
    if args.quick:
        epochs = min(epochs if args.epochs else QUICK_MAX_EPOCHS, QUICK_MAX_EPOCHS)
    val_metric = args.val_metric
    metrics_names = monitor_metrics(len(labels), val_metric)

    nn_utils.set_seed(args.seed)
    use_cpu = args.cpu or not torch.cuda.is_available()
    device = nn_utils.init_device(use_cpu=use_cpu)

    def records(split: Split) -> list[dict[str, Any]]:
        return [{"index": i, "label": labs, "text": nn_tokens(toks, args.tokenizer, data_utils.tokenize)}
                for i, (toks, labs) in enumerate(zip(split.tokens, split.labels, strict=True))]

    train_rec, valid_rec, test_rec = records(train), records(valid), records(test)
    # How much LibMultiLabel's own tokenizer would change the input (reported, not applied unless
    # --tokenizer libmultilabel).
    n_tok = sum(len(t) for t in train.tokens)
    n_tok_lmm = sum(len(data_utils.tokenize(" ".join(t))) for t in train.tokens)

    # The vocabulary is built without the empty-document sentinel: LibMultiLabel's dictionary builder
    # would give "<unk>" a second index and then index past the end of its embedding matrix.
    vocab_source = [{"text": [w for w in r["text"] if w != EMPTY_DOC_TOKEN]} for r in train_rec]
    word_dict, embed_vecs = data_utils.load_or_build_text_dict(
        dataset=vocab_source, min_vocab_freq=1, embed_file=str(embed_file), silent=args.quiet)
    covered = int((embed_vecs.abs().sum(dim=1) > 0).sum().item())

    def loader(recs: list[dict[str, Any]], shuffle: bool, bs: int) -> Any:
        return data_utils.get_dataset_loader(
            data=recs, classes=labels, device=device, max_seq_length=args.max_seq_length,
            batch_size=bs, shuffle=shuffle, data_workers=args.data_workers, word_dict=word_dict)

    train_loader = loader(train_rec, True, batch_size)
    valid_loader = loader(valid_rec, False, args.eval_batch_size)
    test_loader = loader(test_rec, False, args.eval_batch_size)
    # TextDataset binarises with MultiLabelBinarizer().fit([classes]), i.e. sorted label order.
    order = column_order(list(train_loader.dataset.label_binarizer.classes_), labels)

    model = nn_utils.init_model(
        model_name=spec["model_name"], network_config=net_cfg, classes=labels, embed_vecs=embed_vecs,
        init_weight=spec["init_weight"], log_path=None, learning_rate=lr, optimizer="adam",
        weight_decay=0.0, val_metric=val_metric, metric_threshold=0.5, monitor_metrics=metrics_names,
        silent=args.quiet)
    n_params = sum(p.numel() for p in model.parameters())

    ckpt_dir = (args.out / f"peer_{method}_ckpt") if args.keep_checkpoints else (workdir / f"ckpt_{method}")
    trainer = nn_utils.init_trainer(
        checkpoint_dir=str(ckpt_dir), epochs=epochs, patience=patience, early_stopping_metric=val_metric,
        val_metric=val_metric, silent=args.quiet, use_cpu=use_cpu)
    timer = EpochTimer(method, epochs, val_metric)
    keeper = BestWeights(val_metric)
    trainer.callbacks += [timer.as_callback(L), keeper.as_callback(L)]
    if args.quiet:  # init_trainer does not expose enable_model_summary; drop the summary callback
        from lightning.pytorch.callbacks import ModelSummary

        trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, ModelSummary)]

    log.info("%s: %d params, vocab %d (%d with vectors), %d labels, max %d epochs, lr %g, batch %d, "
             "device %s", method, n_params, len(word_dict), covered, len(labels), epochs, lr, batch_size,
             device)
    t0 = time.perf_counter()
    trainer.fit(model, train_dataloaders=train_loader, val_dataloaders=valid_loader)
    train_seconds = time.perf_counter() - t0

    # Model selection: the epoch with the best validation val_metric, kept in memory by BestWeights.
    # LibMultiLabel's own checkpoint holds the same weights, but it pickles the network in its
    # hyperparameters and would need torch.load(weights_only=False); we never unpickle it.
    best_epoch = keeper.epoch
    if keeper.state is not None:
        model.load_state_dict(keeper.state)
        ckpt_score = getattr(trainer.checkpoint_callback, "best_model_score", None)
        if ckpt_score is not None and abs(float(ckpt_score) - keeper.score) > 1e-6:
            log.warning("%s: the library's checkpoint kept %s=%.5f, ours %.5f (epoch %s)", method, val_metric,
                        float(ckpt_score), keeper.score, best_epoch)
    else:
        log.warning("%s: no validation score was recorded; using the last epoch's weights", method)

    test_out = trainer.test(model, dataloaders=test_loader, verbose=False)
    test_metrics = {k: float(v) for k, v in (test_out[0] if test_out else {}).items()}

    def predict(dl: Any) -> tuple[Any, float]:
        model.eval()
        model.to(device)
        parts = []
        s0 = time.perf_counter()
        with torch.inference_mode():
            for batch in dl:
                batch = {k: v.to(device) for k, v in batch.items()}
                parts.append(torch.sigmoid(model(batch)).float().cpu().numpy())
        return np.concatenate(parts, axis=0), time.perf_counter() - s0

    v_scores, _ = predict(valid_loader)
    t_scores, infer_s = predict(test_loader)

    info = {
        "method": method,
        "versions": package_versions(),
        "score_kind": "sigmoid probabilities (LibMultiLabel predicts positive at >= 0.5)",
        "config": {
            "api": "libmultilabel.nn.data_utils.load_or_build_text_dict / get_dataset_loader, "
                   "nn_utils.init_model / init_trainer, lightning Trainer.fit/test",
            "model_name": spec["model_name"],
            "network_config": net_cfg,
            "init_weight": spec["init_weight"],
            "optimizer": "adam", "learning_rate": lr, "weight_decay": 0.0,
            "batch_size": batch_size, "eval_batch_size": args.eval_batch_size,
            "max_epochs": epochs, "patience": patience,
            "val_metric": val_metric, "early_stopping_metric": val_metric,
            "monitor_metrics": metrics_names, "metric_threshold": 0.5,
            "loss": "binary_cross_entropy_with_logits",
            "gradient_clip": "by value at 0.5 (LibMultiLabel's trainer)",
            "max_seq_length": args.max_seq_length, "min_vocab_freq": 1,
            "tokenizer": args.tokenizer, "embed_file": str(args.split / "embeddings.txt"),
            "embed_dim": int(embed_vecs.shape[1]), "vocab_size": len(word_dict),
            "vocab_with_vectors": covered, "n_parameters": int(n_params),
            "seed": args.seed, "device": str(device), "torch_threads": torch.get_num_threads(),
            "data_workers": args.data_workers, "quick": args.quick,
            "model_selection": f"best validation {val_metric} checkpoint (ModelCheckpoint), "
                               f"early stopping after {patience} epochs without improvement",
        },
        "data": {**data_stats(train, valid, test, labels),
                 "train_tokens": n_tok,
                 "train_tokens_libmultilabel_tokenizer": n_tok_lmm},
        "epochs_run": len(timer.history),
        "best_epoch": best_epoch,
        "best_val_score": float(trainer.checkpoint_callback.best_model_score)
        if trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_score is not None else None,
        "train_seconds": round(train_seconds, 3),
        "seconds_per_epoch": round(float(np.mean([h["epoch_s"] for h in timer.history])), 3)
        if timer.history else None,
        "train_seconds_per_epoch_excl_validation":
            round(float(np.mean([h["train_s"] for h in timer.history])), 3) if timer.history else None,
        "epoch_history": timer.history,
        "inference_seconds_test": round(infer_s, 4),
        "inference_docs_per_s": round(len(test) / max(infer_s, 1e-9), 1),
        "test_metrics": test_metrics,
        "metrics_note": "LibMultiLabel's nn metrics at threshold 0.5 on the best checkpoint; Macro-F1 "
                        "averages over all labels.json labels (no positives and no predictions = 0)",
    }
    log.info("%s: %d epochs in %.1fs (best %s), test %s", method, len(timer.history), train_seconds,
             best_epoch, {k: round(v, 4) for k, v in test_metrics.items()})
    write_outputs(args.out, method, labels, test, t_scores[:, order], valid, v_scores[:, order], info)


class EpochTimer:
    """Per-epoch wall time (training part and with validation) and one progress line per epoch."""

    def __init__(self, method: str, max_epochs: int, val_metric: str) -> None:
        self.method, self.max_epochs, self.val_metric = method, max_epochs, val_metric
        self.history: list[dict[str, Any]] = []
        self._t0 = self._tv = 0.0

    def as_callback(self, L: Any) -> Any:
        # Built lazily because lightning is only importable inside the peer venv.
        outer = self

        class _Cb(L.Callback):
            def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                outer._t0 = outer._tv = time.perf_counter()

            def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                outer._tv = time.perf_counter()  # only fit() validates here; test uses test hooks

            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                # Lightning 2 runs the epoch's validation before this hook, so this is train + val.
                now = time.perf_counter()
                metrics = {k: round(float(v), 5) for k, v in trainer.callback_metrics.items()}
                entry = {"epoch": trainer.current_epoch + 1, "epoch_s": round(now - outer._t0, 3),
                         "train_s": round((outer._tv if outer._tv > outer._t0 else now) - outer._t0, 3),
                         "val": metrics}
                outer.history.append(entry)
                print(f"[peer {outer.method}] epoch {entry['epoch']}/{outer.max_epochs} "
                      f"{entry['epoch_s']:.1f}s (train {entry['train_s']:.1f}s) "
                      f"val {outer.val_metric}={metrics.get(outer.val_metric, float('nan')):.4f}",
                      file=sys.stderr, flush=True)

        return _Cb()


class BestWeights:
    """A copy of the weights from the epoch with the best validation metric, chosen as LibMultiLabel's
    ModelCheckpoint chooses: lowest "Loss", highest of anything else, the first epoch on ties."""

    def __init__(self, val_metric: str) -> None:
        self.val_metric = val_metric
        self.sign = -1.0 if val_metric == "Loss" else 1.0
        self.score = float("nan")
        self.epoch: int | None = None
        self.state: dict[str, Any] | None = None

    def as_callback(self, L: Any) -> Any:
        outer = self

        class _Cb(L.Callback):
            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                value = trainer.callback_metrics.get(outer.val_metric)
                if value is None or float(value) != float(value):  # missing or NaN: not comparable
                    return
                if outer.epoch is None or outer.sign * float(value) > outer.sign * outer.score:
                    outer.score, outer.epoch = float(value), trainer.current_epoch + 1
                    outer.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

        return _Cb()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="LibMultiLabel 0.10.0 reference run (linear, BiGRU-LWAN, CAML) on an FMLC split.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--split", type=Path, required=True,
                   help="directory with train/valid/test.jsonl, labels.json, embeddings.txt")
    p.add_argument("--out", type=Path, required=True, help="output directory (created)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list from {METHODS}")
    p.add_argument("--epochs", type=int, default=None,
                   help="max epochs for the neural methods (default: per-method, bigru-lwan 50, caml 200; "
                        "early stopping usually ends sooner)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: <= {QUICK_MAX_EPOCHS} epochs, <= {QUICK_MAX_TRAIN} training and "
                        f"<= {QUICK_MAX_VALID} validation docs")
    p.add_argument("--rnn-dim", type=int, default=600, help="BiGRU-LWAN rnn_dim (both directions together)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: per-method)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default: per-method, 16)")
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: 10)")
    p.add_argument("--val-metric", default="P@1", help="LibMultiLabel metric for model selection")
    p.add_argument("--max-seq-length", type=int, default=500)
    p.add_argument("--tokenizer", choices=("whitespace", "libmultilabel"), default="whitespace",
                   help="neural input: the project's tokens as they are, or re-tokenised by LibMultiLabel's "
                        "\\w+ tokenizer (drops numeric tokens)")
    p.add_argument("--linear-technique", default="1vsrest",
                   choices=("1vsrest", "thresholding", "cost_sensitive", "cost_sensitive_micro"))
    p.add_argument("--linear-options", default="", help="liblinear option string (default: library's)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads and liblinear -m (default: library/torch default = all "
                        "cores; use 1 on a shared small CPU, where 2 contended threads ran a GRU 5x slower)")
    p.add_argument("--data-workers", type=int, default=0,
                   help="DataLoader worker processes (library CLI default 4; 0 avoids forking on small CPUs)")
    p.add_argument("--cpu", action="store_true", help="do not use CUDA even when available")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep Lightning checkpoints in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-library logging")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        p.error(f"--methods: unknown {bad}; choose from {', '.join(METHODS)}")
    args.methods = methods
    for name in ("epochs", "rnn_dim", "batch_size", "eval_batch_size", "max_seq_length"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.rnn_dim % 2:
        p.error("--rnn-dim must be even (it is split over the two GRU directions)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="[peer] %(message)s", stream=sys.stderr)
    # Lightning has its own handlers; without this every Lightning line would print twice.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
        if args.quiet:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        # Inputs are checked before the slow imports so a caller learns about a typo at once.
        if not args.split.is_dir():
            raise InputError(f"--split {args.split} is not a directory")
        labels = read_labels(args.split / "labels.json")
        known = set(labels)
        train = read_split(args.split / "train.jsonl", known)
        valid = read_split(args.split / "valid.jsonl", known)
        test = read_split(args.split / "test.jsonl", known)
        needs_embed = any(m != "linear" for m in args.methods)
        embed = check_embeddings(args.split / "embeddings.txt") if needs_embed else None
    except InputError as exc:
        print(f"[peer] error: {exc}", file=sys.stderr)
        return 2
    ensure_peer_environment()  # may re-exec this script under .peer-venv: nothing to clean up yet
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.quick:
        rng = random.Random(args.seed)
        if len(train) > QUICK_MAX_TRAIN:
            train = train.subset(sorted(rng.sample(range(len(train)), QUICK_MAX_TRAIN)))
        if len(valid) > QUICK_MAX_VALID:
            valid = valid.subset(sorted(rng.sample(range(len(valid)), QUICK_MAX_VALID)))
    args.out.mkdir(parents=True, exist_ok=True)
    log.info("split %s: train %d, valid %d, test %d, %d labels; methods %s%s", args.split, len(train),
             len(valid), len(test), len(labels), ",".join(args.methods), " (quick)" if args.quick else "")
    if embed:
        log.info("embeddings: %d words x %d dims%s", embed[1], embed[2], " (header skipped)" if embed[0] else "")

    failed: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="peer-lmm-"))
    try:
        embed_file = headerless_embeddings(args.split / "embeddings.txt", embed[0], workdir) if embed else None
        for method in args.methods:
            t0 = time.perf_counter()
            # A failed rerun must not leave an older run's files looking like this run's results.
            for stale in (args.out / f"peer_{method}.npz", args.out / f"peer_{method}.json"):
                stale.unlink(missing_ok=True)
            try:
                if method == "linear":
                    run_linear(args, labels, train, valid, test)
                else:
                    assert embed_file is not None
                    run_nn(args, method, labels, train, valid, test, embed_file, workdir)
            except Exception:  # one failing method must not cost the others' results
                traceback.print_exc()
                failed.append(method)
                log.error("%s failed after %.1fs", method, time.perf_counter() - t0)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        log.error("failed methods: %s", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
