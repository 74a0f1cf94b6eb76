"""`fmlc train`'s defaults: one source (TrainConfig and PRESETS), the paper preset, the learning-rate
schedule, the still-improving note, and that the defaults converge where the paper's settings do not."""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fmlc.cli import build_app
from training.cli import train as cli_train
from training.trainer import PRESETS, SETTING_NAMES, LearningRate, TrainConfig, still_improving

runner = CliRunner()
app = build_app()


def test_cli_train_options_fall_back_to_the_config_classes() -> None:
    names = set(SETTING_NAMES)
    options = {name: p.default for name, p in inspect.signature(cli_train).parameters.items() if name in names}
    assert {"lr", "epochs", "batch_size", "patience", "lr_schedule", "warmup_epochs", "model"} <= options.keys()
    # Every training setting left unset on the command line is None, i.e. TrainConfig's (or the preset's) value;
    # seed, freeze_embeddings and preset have no "unset" (0, False and "default" are TrainConfig's values too).
    hard_coded = {name: v for name, v in options.items() if v is not None and TrainConfig().settings()[name] != v}
    assert hard_coded == {}
    assert {name for name, v in options.items() if v is not None} <= {"seed", "freeze_embeddings", "preset"}


def test_defaults_and_paper_preset() -> None:
    cfg = TrainConfig()
    assert (cfg.lr, cfg.lr_schedule, cfg.warmup_epochs, cfg.epochs, cfg.patience, cfg.batch_size) == \
        (1e-3, "plateau", 1.0, 30, 3, 32)
    assert TrainConfig.from_preset() == cfg
    paper = TrainConfig.from_preset("paper")
    assert (paper.lr, paper.lr_schedule, paper.warmup_epochs, paper.epochs, paper.batch_size, paper.preset) == \
        (1e-4, "constant", 0.0, 10, 32, "paper")
    assert (paper.network.embed_dim, paper.network.hidden, paper.network.graph_dim) == (300, 300, 300)
    # An explicit value wins over the preset; None means "not given".
    assert TrainConfig.from_preset("paper", lr=1e-3, epochs=None).lr == 1e-3
    assert TrainConfig.from_preset("paper", lr=1e-3, epochs=None).epochs == 10
    small = TrainConfig.from_preset("small")
    assert small.network.embed_dim == small.network.hidden == 64 and (small.lr, small.lr_schedule) == (3e-3, "plateau")
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig.from_preset("fast")
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig.of(lr_schedule="step")
    assert set(PRESETS) == {"default", "paper", "small"}


def test_learning_rate_schedules() -> None:
    plateau = LearningRate(TrainConfig.of(lr=1e-3, warmup_epochs=1.0, epochs=4), steps_per_epoch=10)
    assert [plateau.at(s) for s in (0, 4, 9)] == pytest.approx([1e-4, 5e-4, 1e-3])
    assert plateau.at(10) == plateau.at(39) == pytest.approx(1e-3)
    plateau.epoch_end(improved=True)
    assert plateau.at(20) == pytest.approx(1e-3)
    plateau.epoch_end(improved=False)
    assert plateau.at(20) == pytest.approx(5e-4)
    plateau.epoch_end(improved=False)
    assert plateau.at(30) == pytest.approx(2.5e-4)

    cosine = LearningRate(TrainConfig.of(lr=1e-3, lr_schedule="cosine", warmup_epochs=0.0, epochs=4), 10)
    assert cosine.at(0) == pytest.approx(1e-3)
    assert cosine.at(20) == pytest.approx(5e-4)
    assert cosine.at(39) < 2e-6
    cosine.epoch_end(improved=False)  # only the plateau schedule listens
    assert cosine.at(0) == pytest.approx(1e-3)

    constant = LearningRate(TrainConfig.from_preset("paper"), 10)
    assert {constant.at(s) for s in range(0, 100, 7)} == {1e-4}


def _history(f1s: list[float]) -> list[dict]:
    return [{"epoch": n, "loss": 1.0, "valid_macro_f1_tuned": f} for n, f in enumerate(f1s, start=1)]


def test_still_improving_exactly_when_the_best_epoch_is_the_last() -> None:
    note = still_improving(_history([0.2, 0.4, 0.5]), patience=3)
    assert note is not None and "still improving at the last epoch (3" in note and "--epochs 6" in note
    long = still_improving(_history([0.1 * n for n in range(1, 11)]), patience=3)
    assert long is not None and "Run about 5 more epochs (--epochs 15)" in long
    assert still_improving(_history([0.2, 0.5, 0.4]), patience=3) is None
    assert still_improving(_history([0.2, 0.5, 0.5]), patience=3) is None  # a tie is no improvement
    assert still_improving(_history([0.5]), patience=3) is None
    assert still_improving([{"epoch": 1, "seconds": 1.0}], patience=3) is None  # the linear model has no epochs


def test_cli_train_paper_preset_and_still_improving_note(tmp_path: Path) -> None:
    data, model = tmp_path / "synth.jsonl", tmp_path / "m"
    assert runner.invoke(app, ["synth", "--n", "300", "--seed", "5", "--out", str(data)]).exit_code == 0
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(model), "--preset", "paper", "--epochs",
                                 "3", "--embed-dim", "16", "--hidden", "16", "--graph-dim", "16", "--max-len", "64",
                                 "--w2v-epochs", "1", "--threads", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "preset paper" in result.output
    config = json.loads((model / "config.json").read_text())
    train_config = config["meta"]["train_config"] if "meta" in config else config["train_config"]
    assert (train_config["preset"], train_config["lr"], train_config["lr_schedule"], train_config["epochs"]) == \
        ("paper", 1e-4, "constant", 3)
    history = json.loads((model / "metrics.json").read_text())["history"]
    best = next(h["epoch"] for h in history if h["best"])
    assert ("still improving" in result.output) == (best == history[-1]["epoch"])


def test_fit_follows_the_schedule_epoch_by_epoch() -> None:
    """The plateau schedule inside the real loop: full rate once the one-epoch warm-up is over, halved
    after every epoch whose validation macro-F1 is no better than the best so far."""
    from model_fixtures import synthetic_splits

    from training.trainer import fit, prepare

    splits = synthetic_splits(n=240, seed=3)
    tiny = {"embed_dim": 8, "hidden": 8, "attn_dim": 8, "graph_dim": 8, "max_len": 32, "w2v_epochs": 1,
            "epochs": 5, "patience": 5, "progress": False, "threads": 1}
    prep = prepare(splits, TrainConfig.of(**tiny))
    history = fit(prep, TrainConfig.of(lr=2e-3, **tiny)).history
    assert len(history) == 5 and history[0]["lr"] == pytest.approx(2e-3)
    best, expected = -1.0, 2e-3
    for h in history:
        assert h["lr"] == pytest.approx(expected)
        if h["valid_macro_f1_tuned"] > best:
            best = h["valid_macro_f1_tuned"]
        else:
            expected /= 2


def test_experiment_grid_records_and_reports_its_preset() -> None:
    from training.experiment import ExperimentConfig, _same_grid, report_settings, train_config
    from training.experiment_report import _settings_line

    paper = ExperimentConfig(data="d", out="o", base={"lr": 1e-3})
    assert paper.preset == "paper" and paper.epochs_recurrent == 10
    run_cfg = train_config(paper, "fmlc-asl", seed=1)
    assert (run_cfg.preset, run_cfg.lr, run_cfg.lr_schedule, run_cfg.epochs, run_cfg.seed) == \
        ("paper", 1e-3, "constant", 10, 1)
    default = ExperimentConfig(data="d", out="o", preset="default")
    assert default.epochs_recurrent == 30 and train_config(default, "caml", 0).lr_schedule == "plateau"
    with pytest.raises(ValueError, match="unknown preset"):
        ExperimentConfig(data="d", out="o", preset="fast")
    # A grid written before presets existed ran the paper's schedule, so it resumes as preset paper only.
    old = {k: v for k, v in asdict(paper).items() if k != "preset"}
    assert _same_grid(old, asdict(paper)) and not _same_grid(old, asdict(default))
    line = _settings_line(report_settings(asdict(paper)), {})
    assert "preset paper with lr changed" in line and "Adam lr 0.001 (constant)" in line
    assert "patience 3" in line and "one split (seed 0)" in line
    assert "preset default:" in _settings_line(report_settings(asdict(default)), {})
    # The report names what the run recorded, not fixed text.
    patient = report_settings(asdict(ExperimentConfig(data="d", out="o", base={"patience": 5})))
    assert "patience 5" in _settings_line(patient, {}) and "with patience changed" in _settings_line(patient, {})


def test_defaults_study_table_curves_index_and_resume(tmp_path: Path) -> None:
    from training.defaults_study import best_valid, index, run

    tiny = {"embed_dim": 8, "hidden": 8, "attn_dim": 8, "graph_dim": 8, "max_len": 32, "w2v_epochs": 1, "epochs": 2}
    out = tmp_path / "synth"
    results = run("synth:300:1", out, ["defaults", "paper"], base=tiny)
    runs = results["runs"]
    assert runs["paper"]["settings"]["lr"] == 1e-4 and runs["defaults"]["settings"]["lr_schedule"] == "plateau"
    for r in runs.values():
        assert r["epochs_run"] == len(r["history"]) <= 2
        assert max(h["valid_macro_f1"] for h in r["history"]) == pytest.approx(r["valid_macro_f1"])
        assert (r["still_improving"] is not None) == (r["best_epoch"] == r["epochs_run"] == 2)
    name, best = best_valid(results)
    assert best == max(r["valid_macro_f1"] for r in runs.values()) and name in runs
    report = (out / "report.md").read_text()
    assert "| **defaults** |" in report and "| paper |" in report and f"{100 * best:.2f} ({name})" in report
    assert (out / "learning_curves.png").stat().st_size > 5000
    index(tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert f"--data synth:300:1 --out {out} --variants defaults,paper" in readme
    assert "| [synth](synth/report.md) |" in readme
    again = run("synth:300:1", out, ["defaults", "paper"], base=tiny)  # resumes: nothing trained again
    assert again["runs"] == json.loads(json.dumps(runs))
