"""Task metrics, computed with scikit-learn and scipy (the numbers a GLUE reader expects).

Classification: ``accuracy``, ``mcc`` (Matthews correlation, CoLA's metric) and ``f1`` (binary: of
the positive class) or ``macro_f1`` (more than two classes). Regression: ``pearson`` and
``spearman`` (STS-B's metrics) and ``mse``. Predictions may be class ids, or logits / scores of shape
(N, C) (arg-maxed); regression predictions may be (N,) or (N, 1).

A correlation that is undefined (a constant prediction or label vector) is reported as NaN, never
silently as 0.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def class_predictions(predictions: Any) -> np.ndarray:
    """Class ids from ids (N,) or logits (N, C)."""
    p = _as_array(predictions)
    if p.ndim == 2:
        p = p.argmax(axis=1)
    if p.ndim != 1:
        raise ValueError(f"classification predictions must be (N,) ids or (N, C) logits, got shape {p.shape}")
    return p.astype(np.int64)


def classification_metrics(predictions: Any, labels: Any, num_labels: int | None = None,
                           positive_label: int = 1) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    pred = class_predictions(predictions)
    gold = _as_array(labels).astype(np.int64).reshape(-1)
    if pred.shape != gold.shape:
        raise ValueError(f"{pred.shape[0]} predictions for {gold.shape[0]} labels")
    if gold.size == 0:
        raise ValueError("no examples to score")
    n = num_labels if num_labels is not None else int(max(pred.max(), gold.max())) + 1
    out = {"accuracy": float(accuracy_score(gold, pred))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on constant vectors; MCC is 0 there by definition
        out["mcc"] = float(matthews_corrcoef(gold, pred))
        if n <= 2:
            out["f1"] = float(f1_score(gold, pred, pos_label=positive_label, average="binary", zero_division=0))
        else:
            out["macro_f1"] = float(f1_score(gold, pred, labels=list(range(n)), average="macro", zero_division=0))
    return out


def regression_metrics(predictions: Any, labels: Any) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    pred = _as_array(predictions).astype(np.float64)
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    gold = _as_array(labels).astype(np.float64).reshape(-1)
    if pred.ndim != 1 or pred.shape != gold.shape:
        raise ValueError(f"regression predictions of shape {pred.shape} for {gold.shape[0]} labels")
    if gold.size == 0:
        raise ValueError("no examples to score")
    out = {"mse": float(np.mean((pred - gold) ** 2))}
    if gold.size < 2 or np.ptp(pred) == 0 or np.ptp(gold) == 0:
        out["pearson"] = out["spearman"] = math.nan
    else:
        out["pearson"] = float(pearsonr(pred, gold)[0])
        out["spearman"] = float(spearmanr(pred, gold)[0])
    return out
