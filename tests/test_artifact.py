import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fmlc import Predictor
from fmlc.artifact import ArtifactError, load, save


def test_round_trip_gives_identical_scores(tiny_training, tiny_splits, tmp_path: Path) -> None:
    texts = [d.text for d in tiny_splits["test"][:64]]
    first = Predictor.load(tiny_training.path, device="cpu")
    scores = first.scores(first.tokenize(texts))
    # Save the loaded artifact again: same bytes in, same version and same scores out.
    copy_version = save(load(tiny_training.path), tmp_path / "copy")
    assert copy_version == first.version
    second = Predictor.load(tmp_path / "copy", device="cpu")
    np.testing.assert_array_equal(second.scores(second.tokenize(texts)), scores)


def test_artifact_holds_no_pickle_and_all_parts(tiny_model_dir: Path) -> None:
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "labels.json", "vocab.json", "thresholds.json", "weights.safetensors", "graph.json",
            "metrics.json", "VERSION"} <= names
    assert not any(n.endswith((".pt", ".pth", ".pkl", ".bin")) for n in names)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert len(config["meta"]["data_fingerprint"]) == 64
    assert json.loads((tiny_model_dir / "graph.json").read_text())["edges"] > 0


def test_tampered_artifact_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    thresholds = json.loads((bad / "thresholds.json").read_text())
    thresholds["tuned"][0] = 0.01
    (bad / "thresholds.json").write_text(json.dumps(thresholds))
    with pytest.raises(ArtifactError, match="do not match VERSION"):
        Predictor.load(bad)


def test_a_json_file_of_the_wrong_shape_is_refused_with_its_name(tiny_model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    (bad / "config.json").write_text("[]")
    with pytest.raises(ArtifactError, match=r"config.json: a JSON list where an object was expected"):
        load(bad)


def test_missing_directory_error_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="fmlc train"):
        Predictor.load(tmp_path / "nope")


def test_predictions_carry_scores_and_evidence_from_the_text(tiny_model_dir: Path, tiny_splits) -> None:
    predictor = Predictor.load(tiny_model_dir)
    docs = tiny_splits["test"][:40]
    preds = predictor.predict([d.text for d in docs])
    assert len(preds) == len(docs)
    labelled = [p for p in preds if p.labels]
    assert len(labelled) > 30
    for doc, pred in zip(docs, preds, strict=True):
        tokens = set(predictor.tokenize([doc.text])[0])
        scores = [ls.score for ls in pred.labels]
        assert scores == sorted(scores, reverse=True)
        for ls in pred.labels:
            assert ls.score >= predictor.thresholds[predictor.labels.index(ls.label)]
            assert ls.evidence and set(ls.evidence) <= tokens


def test_length_aware_batching_gives_the_same_scores(tiny_model_dir: Path, tiny_splits) -> None:
    predictor = Predictor.load(tiny_model_dir)
    tokens = predictor.tokenize([d.text for d in tiny_splits["test"][:50]])
    np.testing.assert_allclose(predictor.scores(tokens, batch_size=8, length_aware=True),
                               predictor.scores(tokens, batch_size=8, length_aware=False), atol=1e-5)


def test_empty_and_stopword_only_texts_do_not_break(tiny_model_dir: Path) -> None:
    predictor = Predictor.load(tiny_model_dir)
    assert len(predictor.predict(["", "的了吗", "😡😡"])) == 3
