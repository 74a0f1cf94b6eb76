"""The README's cross-set table, built from results.json files written here by hand."""

import json
from pathlib import Path

import pytest

from training.results_table import table


def _run(method: str, seed: int, macro: float, tail: float) -> dict:
    block = {"all": {"macro_f1": macro, "micro_f1": 0.9, "macro_p": 0.8, "macro_r": 0.7},
             "tail": {"macro_f1": tail, "micro_f1": 0.5, "macro_p": 0.4, "macro_r": 0.3}, "p@1": 0.95}
    return {"method": method, "seed": seed, "tuned": block, "threshold_0.5": block,
            "seconds_per_epoch": 1.0, "inference_docs_per_s": 10.0, "epochs_run": 3}


def _report(folder: Path, runs: list[dict]) -> Path:
    folder.mkdir()
    results = {"runs": {f"{r['method']}/seed{r['seed']}": r for r in runs}}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_table_recomputes_means_leads_and_seed_wins(tmp_path: Path) -> None:
    a = _report(tmp_path / "a", [_run("bigru-lwan", 0, 0.80, 0.60), _run("bigru-lwan", 1, 0.82, 0.64),
                                 _run("fmlc-asl", 0, 0.83, 0.65), _run("fmlc-asl", 1, 0.81, 0.66)])
    b = _report(tmp_path / "b", [_run("linear", 0, 0.50, 0.20), _run("fmlc-asl", 0, 0.40, 0.30)])
    lines = table([a, b], ["A", "B"]).splitlines()
    assert lines[0] == "| method | A | B |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    # ± is the sample standard deviation (ddof = 1): 80 and 82 give 1.41, not 1.00.
    assert rows["BiGRU-LWAN"] == "| BiGRU-LWAN | 81.00 ± 1.41 / 62.00 ± 2.83 (2) | not run |"
    assert rows["**FMLC/ASL**"] == "| **FMLC/ASL** | **82.00 ± 1.41** / **65.50 ± 0.71** (2) | 40.00 / **30.00** (1) |"
    lead = rows["FMLC/ASL − best earlier method"]
    # Set A: +1.00 / +3.50 over BiGRU-LWAN, ahead on seed 0 (+3 / +5) but not seed 1 (-1 / +2) on macro-F1.
    assert "+1.00 / +3.50 over bigru-lwan; ahead on 1 of 2 / 2 of 2 seeds, worst seed -1.00 / +2.00" in lead
    assert "-10.00 / +10.00 over linear" in lead
    assert rows["linear TF-IDF"] == "| linear TF-IDF | not run | **50.00** / 20.00 (1) |"
    # Rows run in no report (CAML, the ablations, LibMultiLabel, the default here) are left out.
    assert set(rows) == {"linear TF-IDF", "BiGRU-LWAN", "**FMLC/ASL**", "FMLC/ASL − best earlier method"}


def test_table_names_must_match_reports_and_results_must_exist(tmp_path: Path) -> None:
    a = _report(tmp_path / "a", [_run("fmlc-asl", 0, 0.5, 0.5)])
    with pytest.raises(ValueError, match="one name per report"):
        table([a], ["A", "B"])
    with pytest.raises(FileNotFoundError, match="fmlc experiment"):
        table([tmp_path / "missing"])
