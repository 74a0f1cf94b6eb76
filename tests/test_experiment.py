"""The experiment grid in --quick form: every method, one seed, a small real subset."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from training.experiment import METHODS, ExperimentConfig, rerender, run

DUEE = Path(__file__).resolve().parents[2] / "shared" / "data" / "duee1.0"


@pytest.mark.skipif(not DUEE.exists(), reason="shared/data/duee1.0 is not beside the repo")
def test_quick_grid_writes_table_gains_and_plots(tmp_path: Path) -> None:
    small = {"embed_dim": 24, "hidden": 24, "attn_dim": 24, "graph_dim": 24, "filters": 24, "lr": 3e-3,
             "w2v_epochs": 1, "progress": False, "threads": 2}
    cfg = ExperimentConfig(data=str(DUEE), out=str(tmp_path), seeds=1, quick=True, max_docs=700,
                           parent_labels="-", base=small)
    results = run(cfg)
    assert set(results["summary"]["methods"]) == set(METHODS)
    assert results["data"]["labels"] > 60  # 65 children (most of them) + parents
    on_disk = json.loads((tmp_path / "results.json").read_text())
    gains = on_disk["summary"]["gains"]
    assert set(gains) == {"macro_f1", "tail_macro_f1"}
    best = max(("linear", "caml", "zacnn", "bigru-lwan"),
               key=lambda m: on_disk["summary"]["methods"][m]["macro_f1"]["mean"])
    expected = (on_disk["summary"]["methods"]["fmlc-asl"]["macro_f1"]["mean"]
                - on_disk["summary"]["methods"][best]["macro_f1"]["mean"])
    assert gains["macro_f1"]["points"] == pytest.approx(expected)
    paired = on_disk["summary"]["paired"]
    assert set(paired) == set(METHODS) - {"fmlc-asl", "fmlc-wide"} and paired[best]["seeds"] == [0]
    # The default model is set against every single method, and against its own two paths.
    wide = on_disk["summary"]["wide_gains"]["macro_f1"]
    singles = {m: row["macro_f1"]["mean"] for m, row in on_disk["summary"]["methods"].items() if m != "fmlc-wide"}
    assert wide["best_single"] == max(singles, key=singles.__getitem__)
    assert wide["points"] == pytest.approx(on_disk["summary"]["methods"]["fmlc-wide"]["macro_f1"]["mean"]
                                           - max(singles.values()))
    runs = on_disk["runs"]
    (rule,) = on_disk["summary"]["wide_rule"]
    assert rule["valid"]["macro_f1"]["linear"] == pytest.approx(100 * runs["linear/seed0"]["valid_macro_f1"])
    # Judged out of fold, where the blend was chosen: FMLC alone and linear alone are among its choices.
    assert rule["strategy"] in ("fmlc", "linear", "shared", "per-label") and rule["holds_on_valid"]
    assert f"| 0 | {rule['strategy']} | valid, out of fold |" in (tmp_path / "report.md").read_text()
    # The grid's FMLC/ASL run is the wide & deep run's FMLC path (the same model, tests/test_wide.py),
    # finished as a model of its own, not trained a second time.
    assert runs["fmlc-asl/seed0"]["trained_as"] == "the FMLC path of fmlc-wide/seed0"
    assert runs["fmlc-asl/seed0"]["history"] == runs["fmlc-wide/seed0"]["history"]
    # Each run leaves its probabilities beside the split, so blends and thresholds can be studied again.
    with np.load(tmp_path / "split" / "scores" / "fmlc-wide-seed0.npz", allow_pickle=False) as wide_scores:
        assert list(wide_scores["labels"]) == results["labels"]
        assert list(wide_scores["train_counts"]) == results["train_counts"]
        beta = np.asarray(runs["fmlc-wide/seed0"]["components"]["blend"]["weights"])
        for split in ("valid", "test"):
            assert wide_scores[split].shape == wide_scores[f"y/{split}"].shape
            np.testing.assert_allclose(wide_scores[split], beta * wide_scores[f"{split}/linear"]
                                       + (1 - beta) * wide_scores[f"{split}/fmlc"], atol=1e-5)
        with np.load(tmp_path / "split" / "scores" / "fmlc-asl-seed0.npz", allow_pickle=False) as alone:
            np.testing.assert_allclose(alone["test"], wide_scores["test/fmlc"], atol=1e-6)
    assert {p.name for p in (tmp_path / "split" / "scores").iterdir()} == {f"{m}-seed0.npz" for m in METHODS}
    assert rule["valid"]["macro_f1"]["fmlc"] == pytest.approx(100 * runs["fmlc-asl/seed0"]["valid_macro_f1"])
    assert rule["test"]["macro_f1"]["fmlc"] == pytest.approx(100 * runs["fmlc-asl/seed0"]["tuned"]["all"]["macro_f1"])
    within_seed = 100 * (runs["fmlc-asl/seed0"]["tuned"]["tail"]["macro_f1"]
                         - runs[f"{best}/seed0"]["tuned"]["tail"]["macro_f1"])
    assert paired[best]["tail_macro_f1"]["per_seed"] == [pytest.approx(within_seed)]
    report = (tmp_path / "report.md").read_text()
    assert "| fmlc-asl |" in report and "**" in report
    assert "## FMLC wide & deep (the default) against every single method" in report
    assert "FMLC/ASL (seed 0) is the FMLC path of the wide & deep run of the same seed" in report
    # The text names the settings the grid recorded: machine, threads, patience, split seed, the paper's claim.
    assert f"inside the grid on a {os.cpu_count()}-core machine (torch 2 threads)" in report
    assert "(patience 3), one split (seed 0)" in report and "(paper: +3.1)" in report
    assert on_disk["settings"]["machine"] == {"cpus": os.cpu_count(), "torch_threads": 2}
    before = report
    assert rerender(tmp_path)["settings"] == on_disk["settings"]  # `fmlc report`: the same text again
    assert (tmp_path / "report.md").read_text() == before
    assert "## Seed by seed" in report and f"| {best} | 1 |" in report
    graph = results["data"]["label_graph"]
    assert graph["edges"] > 0 and graph["tail_labels_with_neighbours"] <= graph["tail_labels"]
    assert "Label graph from the training split" in report
    assert set(graph["with_neighbours"]) <= set(results["labels"]) and len(graph["with_neighbours"]) == graph[
        "labels_with_neighbours"]
    assert "## Where the label graph can act" in report
    from training.experiment import graph_info_from_split

    assert graph_info_from_split(tmp_path) == graph  # a finished grid's statistics, again from its split folder
    for run_ in runs.values():  # the recorded history is the one model selection used
        if run_["method"] != "linear":
            assert len(run_["history"]) == run_["epochs_run"]
            # (The wide & deep model's epochs are its FMLC path's, chosen before the blend.)
            selected = run_["components"]["fmlc"]["valid"]["macro_f1"] if "components" in run_ else run_[
                "valid_macro_f1"]
            assert max(h["valid_macro_f1"] for h in run_["history"]) == pytest.approx(selected)
    assert "## Validation macro-F1 by epoch" in report and "| fmlc-asl/seed0 |" in report
    for png in ("macro_f1.png", "per_label_f1.png", "learning_curves.png"):
        assert (tmp_path / png).stat().st_size > 5000
    split = tmp_path / "split"
    assert {p.name for p in split.iterdir()} >= {"train.jsonl", "valid.jsonl", "test.jsonl", "labels.json",
                                                 "embeddings.txt"}
    # Resuming with the same configuration trains nothing again.
    again = run(cfg)
    assert again["runs"].keys() == results["runs"].keys()
    # A resumed grid trains on the vectors it started with (word2vec itself is not deterministic).
    on_disk["runs"].pop("caml/seed0")
    (tmp_path / "results.json").write_text(json.dumps(on_disk))
    resumed = run(cfg)["runs"]
    assert resumed["caml/seed0"]["vectors"] == resumed["fmlc-asl/seed0"]["vectors"]
    assert "the same word2vec vectors for every run" in (tmp_path / "report.md").read_text()


def test_sensitivity_scores_validation_only_and_resumes(tmp_path: Path) -> None:
    from training.sensitivity import run as sensitivity
    from training.synth import write_jsonl

    data = write_jsonl(tmp_path / "synth.jsonl", 500, seed=3)
    base = {"lr": 1e-2, "embed_dim": 16, "hidden": 16, "attn_dim": 16, "graph_dim": 16, "filters": 16,
            "threads": 1, "progress": False, "w2v_epochs": 1}
    out = tmp_path / "sens"
    results = sensitivity(str(data), out, parent_labels=None, seeds=1, base=base, epochs=1,
                          variants=["base", "identity"])
    assert set(results["summary"]) == {"base", "identity"}
    run = results["runs"]["identity/seed0"]
    assert run["config"]["graph"] == "identity" and 0.0 <= run["valid_macro_f1"] <= 1.0
    assert all("test" not in key for r in results["runs"].values() for key in r), "no test scores here"
    assert (out / "sensitivity.png").stat().st_size > 3000 and "| identity |" in (out / "sensitivity.md").read_text()
    again = sensitivity(str(data), out, parent_labels=None, seeds=1, base=base, epochs=1, variants=["base", "identity"])
    assert again["runs"] == results["runs"]  # resumed, nothing retrained
    more = sensitivity(str(data), out, parent_labels=None, seeds=1, base=base, epochs=1,
                       variants=["base", "random-vectors"])  # a later variant, on the vectors of the first ones
    assert more["runs"]["random-vectors/seed0"]["vectors"] == run["vectors"]
    assert "the same word2vec vectors for every run" in (out / "sensitivity.md").read_text()
    with pytest.raises(ValueError, match="unknown variants"):
        sensitivity(str(data), out, parent_labels=None, seeds=1, base=base, epochs=1, variants=["nope"])


def test_rescore_peer_from_the_split_folder(tmp_path: Path) -> None:
    import numpy as np

    from training.experiment import rescore_peer

    labels = ["a", "b"]
    split = tmp_path / "split"
    split.mkdir()
    (split / "labels.json").write_text(json.dumps(labels))
    rows = {name: [{"id": f"{name}{i}", "text": "t", "labels": ["a"] if i % 2 else ["b"]} for i in range(40)]
            for name in ("valid", "test")}
    rows["valid"][0]["labels"] = ["a", "b"]
    for name, rs in rows.items():
        (split / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    (tmp_path / "results.json").write_text(json.dumps({"labels": labels, "train_counts": [500, 50]}))

    def margins(rs: list[dict]) -> np.ndarray:  # SVM-like decision values: +1 for the true label, -1 otherwise
        return np.array([[1.0 if lab in r["labels"] else -1.0 for lab in labels] for r in rs], dtype=np.float32)

    peer = tmp_path / "peer"
    peer.mkdir()
    test_ids = [r["id"] for r in rows["test"]][::-1]  # the peer may write rows in another order
    by_id = {r["id"]: r for r in rows["test"]}
    np.savez(peer / "peer_linear.npz", ids=np.array(test_ids), scores=margins([by_id[i] for i in test_ids]),
             valid_ids=np.array([r["id"] for r in rows["valid"]]), valid_scores=margins(rows["valid"]),
             labels=np.array(labels))
    scored = rescore_peer(tmp_path)
    assert scored["linear"]["threshold_0.5"]["all"]["macro_f1"] == pytest.approx(1.0)
    assert scored["linear"]["tuned"]["all"]["micro_f1"] == pytest.approx(1.0)
    assert scored["linear"]["tuned_min_valid_f1"] > 0
    (split / "labels.json").write_text(json.dumps(["b", "a"]))
    with pytest.raises(ValueError, match="does not hold the split"):
        rescore_peer(tmp_path)


def test_epoch_cap_effect_compares_the_best_epoch_with_the_best_within_the_cap() -> None:
    from training.experiment_report import epoch_cap_effect

    def run_(f1: list[float]) -> dict:
        history = [{"epoch": i + 1, "loss": 0.0, "valid_macro_f1": v} for i, v in enumerate(f1)]
        return {"method": "m", "history": history}

    results = {"runs": {"late/seed0": run_([0.5, 0.6, 0.55, 0.8, 0.7]), "early/seed0": run_([0.5, 0.9, 0.6, 0.7]),
                        "old/seed0": {"method": "m", "epochs_run": 3}}}
    effect = epoch_cap_effect(results, cap=3)
    assert set(effect) == {"late/seed0", "early/seed0"}  # runs without a history are left out
    late, early = effect["late/seed0"], effect["early/seed0"]
    assert (late["best_epoch"], late["best_epoch_within_3"], late["epochs_run"]) == (4, 2, 5)
    assert late["best_within_3"] == 0.6 and late["gain_after_cap"] == pytest.approx(0.2)
    assert (early["best_epoch"], early["gain_after_cap"]) == (2, 0.0)


def test_a_grid_resumes_only_on_the_split_its_runs_had(tmp_path: Path) -> None:
    from training.data import Record
    from training.experiment import saved_split_id, split_id

    splits = {"train": [Record("a", "x", ("l",)), Record("b", "y", ("l",))], "valid": [Record("c", "z", ("l",))],
              "test": [Record("d", "w", ("l",))]}
    assert saved_split_id(tmp_path) is None
    for name, recs in splits.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"id": r.id, "text": r.text}) + "\n"
                                                        for r in recs))
    assert saved_split_id(tmp_path) == split_id(splits)
    moved = {"train": splits["train"][:1], "valid": splits["valid"], "test": splits["test"] + splits["train"][1:]}
    assert split_id(moved) != split_id(splits)


def test_reports_name_their_std_and_claim_same_vectors_only_when_recorded(tmp_path: Path) -> None:
    from training.experiment import report_settings
    from training.experiment_report import sample_std, summarise, write_report

    assert sample_std([70.0, 72.0]) == pytest.approx(1.41421356)  # ddof = 1; np.std would say 1.0
    assert sample_std([70.0]) == 0.0

    def metrics(f1: float) -> dict:
        block = {"macro_f1": f1, "micro_f1": f1, "macro_p": f1, "macro_r": f1}
        return {"all": block, "tail": block, "p@1": f1, "per_label_f1": [f1]}

    def grid(vectors: dict[str, str | None], peer_vectors: str | None) -> dict:
        runs = {}
        for method, f1 in (("fmlc-asl", 0.7), ("bigru-lwan", 0.6)):
            for seed in (0, 1):
                runs[f"{method}/seed{seed}"] = {
                    "method": method, "seed": seed, "tuned": metrics(f1 + seed / 100),
                    "threshold_0.5": metrics(f1), "vectors": vectors[f"{method}/seed{seed}"],
                    "seconds_per_epoch": 1.0, "inference_docs_per_s": 1.0, "epochs_run": 1}
        config = {"data": "d", "epochs_recurrent": 1, "epochs_convolutional": 1, "base": {}}
        results = {"config": config, "data": {}, "labels": ["a"], "train_counts": [5], "runs": runs,
                   "peer": {"linear": {"tuned": metrics(0.5)}},
                   "settings": report_settings(config) | {"machine": {"cpus": 8, "torch_threads": 1}}}
        if peer_vectors:
            results["peer_vectors"] = peer_vectors
        results["summary"] = summarise(results)
        return results

    keys = ["fmlc-asl/seed0", "fmlc-asl/seed1", "bigru-lwan/seed0", "bigru-lwan/seed1"]
    matched = grid(dict.fromkeys(keys, "v1"), "v1")
    assert matched["summary"]["methods"]["fmlc-asl"]["macro_f1"]["std"] == pytest.approx(0.70710678)
    write_report(matched, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "sample standard deviation over seeds (ddof = 1" in report
    assert "(same split and vectors, same initialisation seed)" in report
    assert "## External reference: LibMultiLabel on the same split and vectors" in report
    assert "equal scores rank in label order" in report

    unrecorded = grid(dict.fromkeys(keys, "v1") | {"bigru-lwan/seed1": None}, None)
    write_report(unrecorded, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "same split and vectors" not in report
    assert "provably the same for 1 of 2 pairs" in report
    assert "## External reference: LibMultiLabel on the same split\n" in report


def test_a_grid_without_a_split_fingerprint_refuses_runs_on_a_split_of_other_sizes(tmp_path: Path) -> None:
    from training.synth import write_jsonl

    data = tmp_path / "synth.jsonl"
    write_jsonl(data, 300, 2)
    out = tmp_path / "grid"
    out.mkdir()
    cfg = ExperimentConfig(data=str(data), out=str(out), seeds=1, quick=True, methods=["linear"])
    old = {"config": {}, "data": {"split_sizes": {"train": 209, "valid": 46, "test": 45}},
           "runs": {"linear/seed0": {"method": "linear", "seed": 0}}}
    (out / "results.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="another --out"):
        run(cfg)
    assert json.loads((out / "results.json").read_text()) == old  # nothing was overwritten
