"""Evaluation metrics per task, computed with scikit-learn / scipy from logits and labels (numpy).

Every function returns a flat ``{name: float}``; a metric that is undefined for the data (AUROC with a
single class present, a correlation of a constant) is ``nan`` rather than an exception, so one odd
validation split never kills a long run.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

# The metric each task selects its best checkpoint / early stopping on, and whether larger is better.
DEFAULT_SELECTION = {
    "classification": ("mcc", True),
    "multilabel": ("macro_f1", True),
    "regression": ("pearson", True),
    "lm": ("loss", False),
}
HIGHER_IS_BETTER = {
    "loss": False, "mse": False, "perplexity": False, "bits_per_base": False,
    "accuracy": True, "mcc": True, "macro_f1": True, "auroc": True, "auprc": True,
    "pearson": True, "spearman": True, "r2": True,
}


def warn_undefined(metrics: dict[str, float], split: str, log) -> None:
    """Log (on ``log``) which of ``metrics`` are undefined for ``split``'s data, and why, rather than let a
    bare ``nan`` pass as a score."""
    undefined = [name for name, value in metrics.items() if isinstance(value, float) and math.isnan(value)]
    if undefined:
        log.warning("%s: %s undefined (nan): the data hold a single class, or a constant "
                    "target", split, ", ".join(undefined))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Single-label (binary or multi-class): logits (N, C), labels (N,) class indices."""
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, matthews_corrcoef, roc_auc_score

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = logits.shape[1]
    probs = softmax(logits)
    predicted = probs.argmax(axis=1)
    # cross entropy in nats, from log-softmax for stability
    log_probs = logits - logits.max(axis=1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    out = {
        "loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
        "accuracy": float(accuracy_score(labels, predicted)),
        "mcc": float(matthews_corrcoef(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", labels=np.arange(n_classes), zero_division=0)),
    }
    present = np.unique(labels)
    if len(present) < 2:
        out["auroc"] = out["auprc"] = math.nan
    elif n_classes == 2:
        out["auroc"] = float(roc_auc_score(labels, probs[:, 1]))
        out["auprc"] = float(average_precision_score(labels, probs[:, 1]))
    else:
        # one-vs-rest, macro over the classes present in this split
        onehot = np.eye(n_classes)[labels][:, present]
        out["auroc"] = float(roc_auc_score(onehot, probs[:, present], average="macro"))
        out["auprc"] = float(average_precision_score(onehot, probs[:, present], average="macro"))
    return out


def multilabel_metrics(logits: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Independent labels: logits (N, C), labels (N, C) of 0/1. MCC is the mean over labels."""
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, matthews_corrcoef, roc_auc_score

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    probs = sigmoid(logits)
    predicted = (probs >= threshold).astype(np.int64)
    # binary cross entropy with logits, averaged over labels and examples
    bce = np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))
    out = {
        "loss": float(bce.mean()),
        "accuracy": float(accuracy_score(labels, predicted)),  # exact match of the whole label set
        "mcc": float(np.mean([matthews_corrcoef(labels[:, j], predicted[:, j]) for j in range(labels.shape[1])])),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
    }
    informative = [j for j in range(labels.shape[1]) if 0 < labels[:, j].sum() < len(labels)]
    if informative:
        out["auroc"] = float(roc_auc_score(labels[:, informative], probs[:, informative], average="macro"))
        out["auprc"] = float(average_precision_score(labels[:, informative], probs[:, informative], average="macro"))
    else:
        out["auroc"] = out["auprc"] = math.nan
    return out


def regression_metrics(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """predictions/targets (N, T); correlations are averaged over targets."""
    from scipy.stats import pearsonr, spearmanr

    predictions = np.asarray(predictions, dtype=np.float64).reshape(len(targets), -1)
    targets = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    mse = float(((predictions - targets) ** 2).mean())
    pearson, spearman = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns nan, which we keep
        for j in range(targets.shape[1]):
            if len(targets) < 2:
                pearson.append(math.nan)
                spearman.append(math.nan)
                continue
            pearson.append(float(pearsonr(predictions[:, j], targets[:, j])[0]))
            spearman.append(float(spearmanr(predictions[:, j], targets[:, j])[0]))
    return {"loss": mse, "mse": mse, "pearson": float(np.mean(pearson)), "spearman": float(np.mean(spearman))}


def lm_metrics(total_nll: float, n_predicted: int, n_correct: int) -> dict[str, float]:
    """From summed next-unit negative log-likelihood (nats) over ``n_predicted`` units."""
    loss = total_nll / max(n_predicted, 1)
    return {
        "loss": loss,
        "perplexity": float(math.exp(min(loss, 700.0))),
        "bits_per_base": loss / math.log(2.0),
        "accuracy": n_correct / max(n_predicted, 1),
    }


def task_metrics(task: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    if task == "classification":
        return classification_metrics(logits, labels)
    if task == "multilabel":
        return multilabel_metrics(logits, labels)
    if task == "regression":
        return regression_metrics(logits, labels)
    raise ValueError(f"task_metrics does not handle task '{task}' (lm metrics come from lm_metrics)")


def prediction_metrics(task: str, values: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``task_metrics`` from what a ``Predictor`` returns: probabilities (classification, multilabel) or values
    (regression). The metrics `train` reports for its test data, from `classify`'s scores: softmax(log p) is p,
    and sigmoid(logit p) is p (clipped where float32 rounds p to 0 or 1, which only the loss can see)."""
    values = np.asarray(values, dtype=np.float64)
    if task == "classification":
        return classification_metrics(np.log(np.clip(values, 1e-300, None)), labels)
    if task == "multilabel":
        p = np.clip(values, 1e-12, 1 - 1e-12)
        return multilabel_metrics(np.log(p) - np.log1p(-p), labels)
    return task_metrics(task, values, labels)


def is_improvement(value: float, best: float | None, metric: str) -> bool:
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value > best if HIGHER_IS_BETTER.get(metric, True) else value < best
