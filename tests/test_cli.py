"""The `fmlc` command end to end, in-process: synth → train → evaluate → predict, and its errors."""

import json
from pathlib import Path

from typer.testing import CliRunner

from fmlc.cli import app

runner = CliRunner()


def test_synth_train_evaluate_predict(tmp_path: Path) -> None:
    data = tmp_path / "synth.jsonl"
    result = runner.invoke(app, ["synth", "--n", "900", "--seed", "3", "--out", str(data)])
    assert result.exit_code == 0, result.output
    assert len(data.read_text(encoding="utf-8").splitlines()) == 900

    model = tmp_path / "model"
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(model), "--model", "linear", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "written to" in result.output and (model / "VERSION").exists()

    metrics = tmp_path / "metrics.json"
    result = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(data), "--out", str(metrics)])
    assert result.exit_code == 0, result.output
    written = json.loads(metrics.read_text())
    assert written["model_version"] == (model / "VERSION").read_text().strip()
    assert written["data"]["tuned"]["all"]["micro_f1"] > 0.3

    result = runner.invoke(app, ["predict", "--model", str(model), "平台暴力催收，天天打电话骚扰我家人", "利息太高"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [line["text"] for line in lines] == ["平台暴力催收，天天打电话骚扰我家人", "利息太高"]
    assert all("labels" in line and line["model_version"] for line in lines)


def test_bad_record_stops_training_with_file_line_field(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "1", "text": "借款利息太高", "labels": ["利率争议"]}\n'
                    '{"id": "2", "text": "", "labels": ["利率争议"]}\n', encoding="utf-8")
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "m"), "--quiet"])
    assert result.exit_code == 2
    assert result.stderr == f"{data}:2: text: must not be empty\n"  # one line, no traceback
    assert "Traceback" not in result.output
    debug = runner.invoke(app, ["--debug", "train", "--data", str(data), "--out", str(tmp_path / "m"), "--quiet"])
    assert debug.exit_code != 0 and "bad.jsonl:2: text:" in str(debug.exception)


def test_bad_csv_and_missing_model_are_one_line_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "bad.csv"
    data.write_text('text,labels\n"借款利息太高,利率争议\n平台催收,暴力催收\n', encoding="utf-8")
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "m"), "--quiet"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{data}:2: csv: unterminated quote") and result.stderr.count("\n") == 1
    result = runner.invoke(app, ["predict", "--model", str(tmp_path / "nope"), "利息太高"])
    assert result.exit_code == 2 and "fmlc train" in result.stderr and result.stderr.count("\n") == 1
