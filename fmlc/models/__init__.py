"""The networks, one module each, and the one place that maps a model name to its class."""

from __future__ import annotations

from torch import nn

from fmlc.models.bigru_lwan import BiGRULWAN
from fmlc.models.caml import CAML
from fmlc.models.config import MODEL_NAMES, ModelConfig, ModelOutput
from fmlc.models.fmlc import FMLC
from fmlc.models.linear import LinearTfidf
from fmlc.models.wide import FMLCWide
from fmlc.models.zacnn import ZACNN

_REGISTRY: dict[str, type[nn.Module]] = {
    "fmlc-wide": FMLCWide,
    "fmlc": FMLC,
    "bigru-lwan": BiGRULWAN,
    "caml": CAML,
    "zacnn": ZACNN,
    "linear": LinearTfidf,
}


def build_model(cfg: ModelConfig) -> nn.Module:
    return _REGISTRY[cfg.model](cfg)


__all__ = ["MODEL_NAMES", "ModelConfig", "ModelOutput", "build_model", "FMLC", "BiGRULWAN", "CAML",
           "ZACNN", "LinearTfidf", "FMLCWide"]
