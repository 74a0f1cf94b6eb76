"""The model artifact: one directory, plain JSON and safetensors, never pickle.

    config.json        model + tokenizer + training configuration, data fingerprint
    labels.json        label names in model order and their training counts
    vocab.json         token list (position = id)
    thresholds.json    per-label decision thresholds (tuned on validation) and the fixed default
    weights.safetensors  tensors only (the label graph is the `adjacency` buffer of graph models)
    graph.json         a readable summary of the label graph
    metrics.json       training / validation / test metrics
    drift.json         the drift baseline: validation score histograms per label group, label priors
    VERSION            content id: hash of every file that changes predictions

metrics.json, graph.json and drift.json are left out of the version: rewriting a report must not look like a
new model to the workers that watch the version.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fmlc.models.config import ModelConfig
from fmlc.vocab import Vocab

FORMAT = 1
_VERSIONED = ("config.json", "labels.json", "vocab.json", "thresholds.json", "weights.safetensors")


class ArtifactError(ValueError):
    """The directory is not a usable model artifact; the message says which file and why."""


@dataclass
class Artifact:
    model_config: ModelConfig
    tokenizer_config: dict
    labels: list[str]
    train_counts: list[int]
    vocab: Vocab
    thresholds: np.ndarray  # [L]
    state_dict: dict[str, torch.Tensor]
    max_len: int = 256
    default_threshold: float = 0.5
    meta: dict = field(default_factory=dict)  # training config, data fingerprint, graph config
    metrics: dict = field(default_factory=dict)
    graph_summary: dict = field(default_factory=dict)
    drift_baseline: dict = field(default_factory=dict)  # fmlc.drift.Baseline.to_dict(); empty in older artifacts


def _dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")


def compute_version(path: str | os.PathLike, model_name: str) -> str:
    digest = hashlib.sha256()
    for name in _VERSIONED:
        digest.update(name.encode())
        digest.update((Path(path) / name).read_bytes())
    return f"{model_name}-{digest.hexdigest()[:12]}"


def save(artifact: Artifact, path: str | os.PathLike) -> str:
    """Write the artifact atomically (a temp dir renamed into place) and return its version."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fmlc-artifact-", dir=target.parent))
    n_labels = len(artifact.labels)
    if len(artifact.thresholds) != n_labels or len(artifact.train_counts) != n_labels:
        raise ArtifactError("thresholds, train_counts and labels must have one entry per label")
    _dump(tmp / "config.json", {
        "format": FORMAT,
        "model": artifact.model_config.to_dict(),
        "tokenizer": artifact.tokenizer_config,
        "max_len": artifact.max_len,
        "meta": artifact.meta,
    })
    _dump(tmp / "labels.json", {"labels": artifact.labels, "train_counts": [int(c) for c in artifact.train_counts]})
    _dump(tmp / "vocab.json", list(artifact.vocab.tokens))
    _dump(tmp / "thresholds.json", {
        "default": artifact.default_threshold,
        "tuned": [round(float(t), 6) for t in artifact.thresholds],
    })
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in artifact.state_dict.items()}
    save_file(tensors, str(tmp / "weights.safetensors"), metadata={"format": str(FORMAT)})
    _dump(tmp / "graph.json", artifact.graph_summary)
    _dump(tmp / "metrics.json", artifact.metrics)
    if artifact.drift_baseline:
        _dump(tmp / "drift.json", artifact.drift_baseline)
    version = compute_version(tmp, artifact.model_config.model)
    (tmp / "VERSION").write_text(version + "\n")
    if target.exists():
        # Swap via a side name so a watcher never sees a half-written directory.
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        tmp.rename(target)
        for child in old.iterdir():
            child.unlink()
        old.rmdir()
    else:
        tmp.rename(target)
    return version


def read_version(path: str | os.PathLike) -> str:
    version_file = Path(path) / "VERSION"
    if not version_file.is_file():
        raise ArtifactError(f"{path}: no VERSION file — not a model artifact (train one with `fmlc train`)")
    return version_file.read_text().strip()


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: missing — the artifact is incomplete") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc


def _load_object(path: Path) -> dict[str, Any]:
    data = _load_json(path)
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: a JSON {type(data).__name__} where an object was expected")
    return data


def load(path: str | os.PathLike, verify: bool = True) -> Artifact:
    root = Path(path).resolve()  # a symlink flipped mid-load must not mix two artifacts
    if not root.is_dir():
        raise ArtifactError(f"{root}: not a directory; expected a model artifact made by `fmlc train`")
    config = _load_object(root / "config.json")
    if config.get("format") != FORMAT:
        raise ArtifactError(f"{root}/config.json: format {config.get('format')!r}, this fmlc reads {FORMAT}")
    model_config = ModelConfig.from_dict(config["model"])
    version = read_version(root)
    if verify and compute_version(root, model_config.model) != version:
        raise ArtifactError(f"{root}: contents do not match VERSION {version}; the artifact was modified or "
                            "partly copied")
    labels = _load_object(root / "labels.json")
    thresholds = _load_object(root / "thresholds.json")
    # safetensors holds raw tensors only: loading cannot execute code, unlike torch.load/pickle.
    state = load_file(str(root / "weights.safetensors"))
    graph_path = root / "graph.json"
    drift_path = root / "drift.json"
    return Artifact(
        model_config=model_config,
        tokenizer_config=config["tokenizer"],
        labels=list(labels["labels"]),
        train_counts=list(labels["train_counts"]),
        vocab=Vocab(tuple(_load_json(root / "vocab.json"))),
        thresholds=np.asarray(thresholds["tuned"], dtype=np.float32),
        default_threshold=float(thresholds["default"]),
        state_dict=state,
        max_len=int(config["max_len"]),
        meta=config.get("meta", {}),
        metrics=_load_object(root / "metrics.json") if (root / "metrics.json").exists() else {},
        graph_summary=_load_object(graph_path) if graph_path.exists() else {},
        drift_baseline=_load_object(drift_path) if drift_path.exists() else {},
    )
