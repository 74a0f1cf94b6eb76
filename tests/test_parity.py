"""Train/serve parity: what decides the tokens travels inside the artifact, is covered by its
version, and training, `Predictor`, `fmlc tokenize` and the worker's tokenizer process agree."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fmlc import Predictor
from fmlc.artifact import ArtifactError, compute_version, load, save
from fmlc.cli import build_app
from fmlc.text import NORMALIZATION, Tokenizer
from worker.tokenizing import TokenizerProcess

EXAMPLE = "平台暴力催收还收砍头息"
WITH_DICT = ["平台", "暴力催收", "还收", "砍头息"]
WITHOUT_DICT = ["平台", "暴力", "催收", "还收", "砍头", "息"]
runner = CliRunner()
app = build_app()


@pytest.fixture(scope="module")
def dict_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained through `fmlc train --user-dict`; the dictionary file is deleted afterwards."""
    from training.synth import write_jsonl

    root = tmp_path_factory.mktemp("parity")
    data = root / "synth.jsonl"
    write_jsonl(data, 600, 5)
    with data.open("a", encoding="utf-8") as f:  # the example twice, so its words reach the vocabulary
        for i, text in enumerate([EXAMPLE, EXAMPLE + "，客服不理"]):
            f.write(json.dumps({"id": f"x{i}", "text": text, "labels": ["暴力催收"]}, ensure_ascii=False) + "\n")
    user_dict = root / "user_dict.txt"
    user_dict.write_text("暴力催收\n砍头息 5\n", encoding="utf-8")
    model = root / "model"
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(model), "--model", "linear",
                                 "--user-dict", str(user_dict), "--embed-dim", "16", "--w2v-epochs", "1",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    user_dict.unlink()  # the served model must not need it
    return model


def test_training_tokens_need_the_dictionary() -> None:
    assert Tokenizer().tokenize(EXAMPLE) == WITHOUT_DICT


def test_model_trained_with_user_dict_serves_the_tokens_it_was_trained_on(dict_model: Path) -> None:
    config = json.loads((dict_model / "config.json").read_text(encoding="utf-8"))
    assert config["tokenizer"]["user_dict"] == ["暴力催收", "砍头息 5"]
    assert config["tokenizer"]["normalization"] == NORMALIZATION
    vocab = json.loads((dict_model / "vocab.json").read_text(encoding="utf-8"))
    assert {"暴力催收", "砍头息"} <= set(vocab)  # training saw the dictionary's words as tokens

    predictor = Predictor.load(dict_model, device="cpu")
    assert predictor.tokenize([EXAMPLE]) == [WITH_DICT]

    result = runner.invoke(app, ["tokenize", "--model", str(dict_model), EXAMPLE, "利息太高了"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    assert lines[0] == {"text": EXAMPLE, "tokens": WITH_DICT, "model_version": predictor.version}
    assert lines[1]["tokens"] == predictor.tokenize(["利息太高了"])[0]

    proc = TokenizerProcess()  # the worker's child, fed what the pipeline feeds it
    try:
        assert proc.tokenize(predictor.version, predictor.artifact.tokenizer_config, predictor.max_len,
                             [EXAMPLE]) == [WITH_DICT]
    finally:
        proc.close()


def test_user_dict_and_max_len_are_covered_by_the_version(tiny_model_dir: Path, tmp_path: Path) -> None:
    base = load(tiny_model_dir)
    base_version = save(base, tmp_path / "a")
    base.tokenizer_config = base.tokenizer_config | {"user_dict": ["砍头息"]}
    with_dict = save(base, tmp_path / "b")
    base.max_len = base.max_len - 1
    shorter = save(base, tmp_path / "c")
    assert len({base_version, with_dict, shorter}) == 3

    # Editing the dictionary inside an artifact is a modification like any other.
    config = json.loads((tmp_path / "b" / "config.json").read_text(encoding="utf-8"))
    config["tokenizer"]["user_dict"] = ["暴力催收"]
    (tmp_path / "b" / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ArtifactError, match="do not match VERSION"):
        Predictor.load(tmp_path / "b")


def _as_old_artifact(src: Path, dst: Path, trained_with: str | None) -> None:
    """Rewrite an artifact the way fmlc wrote it before the tokenizer recorded its normalisation
    and user dictionary, with a VERSION that matches."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text(encoding="utf-8"))
    config["tokenizer"] = {"stopwords": config["tokenizer"]["stopwords"], "max_tokens": None}
    config["meta"]["train_config"]["user_dict"] = trained_with
    (dst / "config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    (dst / "VERSION").write_text(compute_version(dst, config["model"]["model"]) + "\n")


def test_old_artifact_without_the_new_fields_still_loads(tiny_model_dir: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    _as_old_artifact(tiny_model_dir, tmp_path / "old", trained_with=None)
    with caplog.at_level(logging.WARNING, logger="fmlc.predictor"):
        old = Predictor.load(tmp_path / "old", device="cpu")
    assert old.tokenize([EXAMPLE]) == [WITHOUT_DICT]
    assert old.predict([EXAMPLE])[0].labels is not None
    assert not caplog.records

    # One that was trained with a dictionary it does not carry says so.
    _as_old_artifact(tiny_model_dir, tmp_path / "old-dict", trained_with="/somewhere/user_dict.txt")
    with caplog.at_level(logging.WARNING, logger="fmlc.predictor"):
        Predictor.load(tmp_path / "old-dict", device="cpu")
    assert "/somewhere/user_dict.txt" in caplog.text and "does not carry" in caplog.text


@pytest.mark.parametrize(("change", "reason"), [
    ({"normalization": "something-newer"}, "normalization 'something-newer' is not known"),
    # A token cap this fmlc does not apply would change the tokens the model was trained on.
    ({"max_tokens": 50}, "max_tokens=50 is not supported"),
])
def test_unknown_tokenizer_settings_are_refused_with_a_reason(tiny_model_dir: Path, tmp_path: Path,
                                                              change: dict, reason: str) -> None:
    art = load(tiny_model_dir)
    art.tokenizer_config = art.tokenizer_config | change
    save(art, tmp_path / "m")
    with pytest.raises(ValueError, match=reason):
        Predictor.load(tmp_path / "m")


def test_user_dict_words_are_normalised_like_the_text() -> None:
    # Text is NFKC-normalised and lower-cased before jieba sees it; so are dictionary words.
    tok = Tokenizer(user_dict_entries=("ＰＤＤ先用后付",))
    assert "pdd先用后付" in tok.tokenize("我在PDD先用后付买了东西")


def test_predict_refuses_a_bare_string(tiny_model_dir: Path) -> None:
    predictor = Predictor.load(tiny_model_dir, device="cpu")
    for call in (predictor.predict, predictor.tokenize):
        with pytest.raises(TypeError, match=r"\[text\]"):
            call("利息太高了")
    with pytest.raises(TypeError, match="list of tokens"):
        predictor.predict_tokens(["利息", "太高"])
    assert len(predictor.predict(["利息太高了"])) == 1


def test_loading_leaves_torch_threads_alone_unless_asked(tiny_model_dir: Path) -> None:
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    try:
        Predictor.load(tiny_model_dir, device="cpu")
        assert torch.get_num_threads() == before
        with pytest.raises(TypeError):
            Predictor.load(tiny_model_dir, device="cpu", threads=other)  # the old, ambiguous name is gone
        assert torch.get_num_threads() == before
        Predictor.load(tiny_model_dir, device="cpu", torch_threads=other)
        assert torch.get_num_threads() == other
    finally:
        torch.set_num_threads(before)
