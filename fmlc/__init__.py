"""FMLC: multi-label classification of Chinese internet-finance complaints (model library).

Knows nothing of Kafka, Redis or the command line: `Predictor.load(path).predict(texts)`.

The public names load on first use, so that importing a light module (`fmlc.text` in the worker's
tokenizer process) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fmlc.predictor import LabelScore, OutOfMemoryError, Prediction, Predictor

__version__ = "0.1.0"
__all__ = ["LabelScore", "OutOfMemoryError", "Prediction", "Predictor", "__version__"]
_LAZY = {"LabelScore", "OutOfMemoryError", "Prediction", "Predictor"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module("fmlc.predictor"), name)
    raise AttributeError(f"module 'fmlc' has no attribute {name!r}")
