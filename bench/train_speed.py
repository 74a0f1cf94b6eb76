"""Training epoch time: FMLC against LibMultiLabel's BiGRU-LWAN, same dimensions, same data, one run.

    python -m bench.train_speed [--docs 3000] [--epochs 2] [--batch-size 32] [--threads 1]

The same ccks2019_fin subset is split and tokenised once (`training.trainer.prepare`) and written out
with `training.experiment.write_split`, so LibMultiLabel (in its own venv, `training/peer/libmultilabel.py`)
trains on exactly the tokens, labels and word2vec vectors our models see. Dimensions: embeddings 300,
GRU 300 per direction (LibMultiLabel `rnn_dim` 600 = both directions), attention 300; same batch size,
same maximum length, one torch thread on each side. Both sides train a fixed number of epochs (no
early stopping inside the window) and report the training part of each epoch, without validation;
LibMultiLabel's epoch with its validation is reported too.

Also run: this project's own BiGRU-LWAN (FMLC without the graph, same trainer), which separates the
cost of the graph network from the difference between the two training loops.

Results: bench/results/train_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.common import DEFAULT_DATA, REPO, machine, write_results

NAME = "train_speed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--dim", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-train-speed")
    ap.add_argument("--no-own-bigru", action="store_true", help="skip this project's BiGRU-LWAN")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    from training.data import load_path, split_records
    from training.experiment import subset, write_split
    from training.trainer import TrainConfig, fit, prepare

    t_begin = time.time()
    records = load_path(args.data).records
    if len(records) > args.docs:
        records = subset(records, args.docs, 0)
    splits = split_records(records, seed=0)
    dims = dict(embed_dim=args.dim, hidden=args.dim, attn_dim=args.dim, graph_dim=args.dim, filters=args.dim)
    # A constant rate, as the peer trains with (the timings do not depend on it).
    common = dict(epochs=args.epochs, batch_size=args.batch_size, max_len=args.max_len, lr=1e-3, lr_schedule="constant",
                  warmup_epochs=0.0,
                  patience=args.epochs + 1, threads=args.threads, progress=False, **dims)
    t0 = time.perf_counter()
    prep = prepare(splits, TrainConfig.of(**common))
    prepare_s = time.perf_counter() - t0
    split_dir = args.workdir / "split"
    write_split(prep, splits, split_dir)
    n_train = len(splits["train"])
    tokens_train = sum(len(t) for t in prep.tokens["train"])
    print(f"[train_speed] {len(records)} docs, train {n_train}, {len(prep.labels)} labels, "
          f"{tokens_train / n_train:.1f} tokens/doc; prepare {prepare_s:.1f}s", file=sys.stderr, flush=True)

    ours: dict[str, dict] = {}
    runs = [("fmlc", {"model": "fmlc", "loss": "asl"})]
    if not args.no_own_bigru:
        runs.append(("bigru-lwan (this project)", {"model": "bigru-lwan", "loss": "bce"}))
    for name, extra in runs:
        cfg = TrainConfig.of(**(common | extra))
        t0 = time.perf_counter()
        result = fit(prep, cfg)
        wall = time.perf_counter() - t0
        per_epoch = [h["seconds"] for h in result.history]
        ours[name] = {"seconds_per_epoch_train_only": result.seconds_per_epoch, "epochs": per_epoch,
                      "docs_per_s": n_train / result.seconds_per_epoch, "wall_s_incl_validation_and_test": wall,
                      "valid_macro_f1_tuned_last": result.history[-1]["valid_macro_f1_tuned"],
                      "parameters": int(sum(v.numel() for v in result.artifact.state_dict.values()))}
        print(f"[train_speed] {name}: {result.seconds_per_epoch:.1f} s/epoch (train only) {per_epoch}",
              file=sys.stderr, flush=True)

    peer = run_peer(args, split_dir, args.workdir / "peer")
    fm = ours["fmlc"]["seconds_per_epoch_train_only"]
    payload = {
        "machine": machine() | {"cpus": os.cpu_count(), "loadavg_after": os.getloadavg()},
        "data": {"source": str(args.data), "docs": len(records), "split": {k: len(v) for k, v in splits.items()},
                 "labels": len(prep.labels), "tokens_per_train_doc": tokens_train / n_train,
                 "vocab": len(prep.vocab)},
        "settings": {"epochs": args.epochs, "batch_size": args.batch_size, "max_len": args.max_len, "dim": args.dim,
                     "torch_threads": args.threads, "lr_ours": 1e-3},
        "prepare_s": prepare_s,
        "ours": ours,
        "peer": peer,
        "wall_s": time.time() - t_begin,
    }
    if peer.get("train_seconds_per_epoch_excl_validation"):
        p_train = peer["train_seconds_per_epoch_excl_validation"]
        payload["peer_over_fmlc_epoch_time"] = p_train / fm  # > 1: FMLC trains an epoch faster
        if "bigru-lwan (this project)" in ours:
            payload["peer_over_own_bigru_epoch_time"] = p_train / ours["bigru-lwan (this project)"][
                "seconds_per_epoch_train_only"]
            payload["fmlc_over_own_bigru_epoch_time"] = fm / ours["bigru-lwan (this project)"][
                "seconds_per_epoch_train_only"]
    md = markdown(payload)
    write_results(NAME, payload, md)
    print("\n".join(md))


def run_peer(args: argparse.Namespace, split_dir: Path, out_dir: Path) -> dict:
    from training import peer

    python = peer.peer_python()
    if not python.exists():
        return {"skipped": f"{python} missing: run {peer.SETUP} first"}
    cmd = peer.command(python, "--split", str(split_dir), "--out", str(out_dir), "--methods", "bigru-lwan",
                       "--epochs", str(args.epochs), "--patience", str(args.epochs + 1), "--batch-size",
                       str(args.batch_size), "--max-seq-length", str(args.max_len), "--rnn-dim", str(2 * args.dim),
                       "--threads", str(args.threads), "--val-metric", "Macro-F1", "--quiet")
    print("[train_speed] peer: " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=sys.stderr, env=peer.environment(OMP_NUM_THREADS=str(args.threads)))
    wall = time.perf_counter() - t0
    meta_path = out_dir / "peer_bigru-lwan.json"
    if proc.returncode != 0 or not meta_path.exists():
        return {"failed": f"exit {proc.returncode}", "command": cmd}
    meta = json.loads(meta_path.read_text())
    cfg = meta.get("config", {})
    return {
        "command": cmd, "wall_s_process": wall,
        "seconds_per_epoch_incl_validation": meta.get("seconds_per_epoch"),
        "train_seconds_per_epoch_excl_validation": meta.get("train_seconds_per_epoch_excl_validation"),
        "epochs": meta.get("epoch_history"), "parameters": cfg.get("n_parameters"),
        "network_config": cfg.get("network_config"), "embed_dim": cfg.get("embed_dim"),
        "batch_size": cfg.get("batch_size"), "torch_threads": cfg.get("torch_threads"),
        "vocab_size": cfg.get("vocab_size"), "min_vocab_freq": cfg.get("min_vocab_freq"),
        "versions": meta.get("versions"), "test_metrics": meta.get("test_metrics"),
    }


def markdown(p: dict) -> list[str]:
    s, d = p["settings"], p["data"]
    md = [f"# Training epoch time: FMLC vs LibMultiLabel BiGRU-LWAN ({p['machine'].get('cpus')} shared CPUs, "
          f"torch {s['torch_threads']} thread)", "",
          f"{d['docs']} ccks2019_fin docs (train {d['split']['train']}, {d['labels']} labels, "
          f"{d['tokens_per_train_doc']:.1f} jieba tokens per doc), dimension {s['dim']} "
          f"(GRU {s['dim']} per direction), "
          f"batch {s['batch_size']}, max length {s['max_len']}, {s['epochs']} epochs each; same split, tokens and "
          "word2vec vectors on both sides.", "",
          "| model | s/epoch (train only) | docs/s | parameters | per epoch |", "|---|---|---|---|---|"]
    for name, r in p["ours"].items():
        md.append(f"| {name} | {r['seconds_per_epoch_train_only']:.1f} | {r['docs_per_s']:.0f} | {r['parameters']:,} | "
                  f"{', '.join(f'{x:.1f}' for x in r['epochs'])} |")
    peer = p["peer"]
    if peer.get("train_seconds_per_epoch_excl_validation"):
        per = ", ".join(f"{e['train_s']:.1f}" for e in peer.get("epochs") or [])
        md.append(f"| LibMultiLabel BiGRU-LWAN {peer.get('versions', {}).get('libmultilabel', '')} | "
                  f"{peer['train_seconds_per_epoch_excl_validation']:.1f} | "
                  f"{d['split']['train'] / peer['train_seconds_per_epoch_excl_validation']:.0f} | "
                  f"{(peer.get('parameters') or 0):,} | {per} |")
        md += ["", "- LibMultiLabel's epoch including its validation pass: "
               f"{peer['seconds_per_epoch_incl_validation']:.1f} s",
               f"- **peer / FMLC epoch time: {p['peer_over_fmlc_epoch_time']:.2f}x** (> 1: FMLC's epoch is shorter)"]
        if "peer_over_own_bigru_epoch_time" in p:
            md += [f"- peer BiGRU-LWAN / this project's BiGRU-LWAN: {p['peer_over_own_bigru_epoch_time']:.2f}x "
                   "(same network, two training loops)",
                   f"- FMLC / this project's BiGRU-LWAN: {p['fmlc_over_own_bigru_epoch_time']:.2f}x (the cost of the "
                   "label graph network and ASL)"]
    else:
        md += ["", f"LibMultiLabel peer not run: {peer}"]
    if peer.get("vocab_size"):
        md.append(f"- vocabulary: ours {d['vocab']:,} tokens (min count 2), LibMultiLabel {peer['vocab_size']:,} "
                  f"(min count {peer.get('min_vocab_freq')}, its default); both train the embedding table, so the "
                  "parameter counts differ mostly by the table")
    md += ["", "Speed only: a couple of epochs say nothing about the quality either model reaches "
           "(see reports/ for the full comparison)."]
    return md


if __name__ == "__main__":
    main()
