"""Fitting the linear TF-IDF one-vs-rest baseline with scikit-learn's logistic regression.

The TF-IDF features are computed here with the same formula as `fmlc.models.linear.LinearTfidf`
(sublinear tf, smoothed idf, L2 rows), so the fitted numbers predict identically once copied into
the tensor model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from fmlc.models.linear import LinearTfidf


def tfidf_matrix(encoded: Sequence[Sequence[int]], vocab_size: int, idf: np.ndarray | None = None
                 ) -> tuple[sp.csr_matrix, np.ndarray]:
    rows, cols, vals = [], [], []
    for r, ids in enumerate(encoded):
        ids_arr = np.asarray([i for i in ids if i >= 2], dtype=np.int64)  # <pad>/<unk> carry no meaning
        if len(ids_arr) == 0:
            continue
        uniq, counts = np.unique(ids_arr, return_counts=True)
        rows.extend([r] * len(uniq))
        cols.extend(uniq.tolist())
        vals.extend((1.0 + np.log(counts)).tolist())
    tf = sp.csr_matrix((vals, (rows, cols)), shape=(len(encoded), vocab_size), dtype=np.float64)
    if idf is None:
        df = np.bincount(tf.indices, minlength=vocab_size)
        idf = np.log((1.0 + len(encoded)) / (1.0 + df)) + 1.0
        idf[:2] = 0.0
    x = tf.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x
    return x.tocsr(), idf


def fit_linear(net: LinearTfidf, encoded: Sequence[Sequence[int]], y: np.ndarray, c: float, seed: int,
               progress: bool = False) -> None:
    """One logistic regression per label (inverse regularisation `c`), copied into `net`."""
    x, idf = tfidf_matrix(encoded, net.idf.shape[0])
    coef = np.zeros((y.shape[1], x.shape[1]), dtype=np.float32)
    intercept = np.full(y.shape[1], -10.0, dtype=np.float32)  # a label never seen stays "no"
    for j in tqdm(range(y.shape[1]), desc="linear one-vs-rest", disable=not progress, leave=False):
        target = y[:, j]
        if target.min() == target.max():
            continue
        clf = LogisticRegression(C=c, solver="liblinear", max_iter=200, random_state=seed)
        clf.fit(x, target)
        coef[j] = clf.coef_[0]
        intercept[j] = clf.intercept_[0]
    with torch.no_grad():
        net.idf.copy_(torch.from_numpy(idf.astype(np.float32)))
        net.coef.copy_(torch.from_numpy(coef))
        net.intercept.copy_(torch.from_numpy(intercept))
