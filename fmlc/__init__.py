"""FMLC: multi-label classification of Chinese internet-finance complaints (model library).

Knows nothing of Kafka, Redis or the command line: `Predictor.load(path).predict(texts)`.
"""

from fmlc.predictor import LabelScore, OutOfMemoryError, Prediction, Predictor

__version__ = "0.1.0"
__all__ = ["LabelScore", "OutOfMemoryError", "Prediction", "Predictor", "__version__"]
