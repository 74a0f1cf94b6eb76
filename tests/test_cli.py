"""The `fmlc` command end to end, in-process: synth → train → evaluate → predict, and its errors."""

import json
from pathlib import Path

from typer.testing import CliRunner

from fmlc.cli import build_app

runner = CliRunner()
app = build_app()


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


def test_evaluate_warns_about_labels_the_model_does_not_know(tiny_model_dir: Path, tmp_path: Path) -> None:
    labels = json.loads((tiny_model_dir / "labels.json").read_text(encoding="utf-8"))["labels"]
    data = tmp_path / "eval.jsonl"
    rows = [{"id": "1", "text": "平台暴力催收，天天打电话", "labels": [labels[0], "新标签甲"]},
            {"id": "2", "text": "利息太高了", "labels": ["新标签甲"]},
            {"id": "3", "text": "提现一直不到账", "labels": [labels[1], "新标签乙"]},
            {"id": "4", "text": "客服电话打不通", "labels": [labels[1]]}]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    result = runner.invoke(app, ["evaluate", "--model", str(tiny_model_dir), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"warning: {data}: 2 labels are unknown to the model: 新标签甲 (2), 新标签乙 (1). "
                                    "Their 3 of 6 positives (50.0%) are left out of every metric below; 1 records "
                                    "have no label the model knows.")
    assert "warning" not in result.stdout
