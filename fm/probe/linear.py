"""Linear probes of frozen encoders, side by side, with the statistics a paper needs.

For each feature source (fm.probe.features: encoders, their random-init twins, the histogram
baseline) the same cases are split the same way: group-aware outer folds (no subject on both
sides; stratified by class for classification) repeated over seeds, or the manifest's fixed
train/test split. In each training fold an inner cross-validated grid picks the regularisation
(scikit-learn: StandardScaler + LogisticRegression over C, or Ridge over alpha; optional kNN and a
small MLP). Every case gets an out-of-fold prediction per seed; their mean over seeds is what the
metrics, the 1000x bootstrap 95 % intervals (resampling subjects) and the paired bootstrap tests
between sources (the same resamples for both) are computed on.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from fm.core.errors import InputError
from fm.probe.features import ProbeCase

PROBES = ("linear", "knn", "mlp")
CLASSIFICATION_METRICS = ("auroc", "balanced_accuracy", "accuracy")
REGRESSION_METRICS = ("mae", "r2")


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    task: str  # "classification" or "regression"
    probe: str = "linear"
    folds: int = 5
    inner_folds: int = 3
    seeds: tuple[int, ...] = (0, 1, 2)
    bootstrap: int = 1000

    @property
    def primary(self) -> str:
        """The metric the paired tests compare: AUROC, or MAE for regression."""
        return "auroc" if self.task == "classification" else "mae"

    @property
    def metrics(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS


@dataclasses.dataclass
class ProbeResult:
    source: str
    predictions: np.ndarray  # per case: class probabilities (cases, classes) or values (cases,)
    metrics: dict[str, float]  # on the seed-averaged predictions
    intervals: dict[str, tuple[float, float]]  # bootstrap 95 %
    per_seed: dict[str, list[float]]  # each seed's out-of-fold metric


def infer_task(labels: list) -> str:
    """Classification for text labels or at most 10 distinct integers; regression otherwise."""
    values = set(labels)
    if all(isinstance(v, (int, np.integer)) for v in values) and len(values) <= 10:
        return "classification"
    return "regression" if all(isinstance(v, (int, float, np.number)) for v in values) else "classification"


def check_cases(cases: list[ProbeCase], settings: ProbeSettings) -> None:
    """Refuse what cannot be probed, saying why: one class, too few cases or subjects for the folds."""
    labels = [c.label for c in cases]
    groups = {c.group for c in cases}
    if settings.task == "classification":
        counts = {label: labels.count(label) for label in set(labels)}
        if len(counts) < 2:
            raise InputError(f"the label column has one class only ({labels[0]!r} x {len(labels)}): nothing to probe")
        fixed = any(c.split for c in cases)
        smallest = min(counts, key=counts.get)
        needed = 2 if fixed else settings.folds
        if counts[smallest] < needed:
            raise InputError(
                f"class {smallest!r} has {counts[smallest]} case(s); {settings.folds}-fold probing needs at least {needed} per class (use --folds or more cases)"
            )
    elif not all(isinstance(v, (int, float)) for v in labels):
        raise InputError("regression needs numeric labels")
    if not any(c.split for c in cases) and len(groups) < 2 * settings.folds:
        raise InputError(
            f"{len(groups)} subjects for {settings.folds} outer folds: give at least {2 * settings.folds} (or fewer --folds)"
        )


def probe_source(name: str, features: np.ndarray, cases: list[ProbeCase], settings: ProbeSettings) -> ProbeResult:
    """Out-of-fold predictions of `features` for every case (every seed), their metrics and CIs."""
    y, groups, classes = _targets(cases, settings)
    seeds_predictions, per_seed = [], {m: [] for m in settings.metrics}
    for seed in settings.seeds:
        predicted = _out_of_fold(features, y, groups, cases, settings, seed, 1.0, len(classes))
        seeds_predictions.append(predicted)
        evaluated = _predicted(predicted)
        for metric, value in _metrics(y[evaluated], predicted[evaluated], settings).items():
            per_seed[metric].append(value)
    mean = np.mean(seeds_predictions, axis=0)
    evaluated = _predicted(mean)
    metrics = _metrics(y[evaluated], mean[evaluated], settings)
    intervals = bootstrap_intervals(y[evaluated], mean[evaluated], groups[evaluated], settings)
    return ProbeResult(name, mean, metrics, intervals, per_seed)


def few_shot_metric(features: np.ndarray, cases: list[ProbeCase], settings: ProbeSettings, fraction: float) -> float:
    """The primary metric of the seed-averaged out-of-fold predictions when each fold trains on
    `fraction` of its training subjects (a point of the label-fraction curve; no intervals)."""
    y, groups, classes = _targets(cases, settings)
    folds = [
        _out_of_fold(features, y, groups, cases, settings, seed, fraction, len(classes)) for seed in settings.seeds
    ]
    mean = np.mean(folds, axis=0)
    evaluated = _predicted(mean)
    return _metrics(y[evaluated], mean[evaluated], settings)[settings.primary]


def bootstrap_intervals(y, predicted, groups, settings: ProbeSettings) -> dict[str, tuple[float, float]]:
    resampled = _over_resamples(y, groups, settings, 0, lambda index: _metrics(y[index], predicted[index], settings))
    return {
        m: (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
        for m, values in ((m, [sample[m] for sample in resampled]) for m in settings.metrics)
    }


def paired_test(a: ProbeResult, b: ProbeResult, cases: list[ProbeCase], settings: ProbeSettings) -> dict:
    """Paired bootstrap of the primary metric on the same cases: the difference a - b, its 95 %
    interval, and the two-sided p-value (twice the smaller share of resampled differences on
    either side of zero)."""
    y, groups, _ = _targets(cases, settings)
    both = _predicted(a.predictions) & _predicted(b.predictions)
    y, groups, pa, pb = y[both], groups[both], a.predictions[both], b.predictions[both]
    metric = settings.primary

    def difference(index):
        return _metrics(y[index], pa[index], settings)[metric] - _metrics(y[index], pb[index], settings)[metric]

    differences = np.array(_over_resamples(y, groups, settings, 1, difference))
    p = min(1.0, 2 * min(np.mean(differences <= 0), np.mean(differences >= 0)))
    low, high = np.percentile(differences, [2.5, 97.5])
    return {
        "a": a.source,
        "b": b.source,
        "metric": metric,
        "difference": float(difference(np.arange(len(y)))),
        "ci": (float(low), float(high)),
        "p": float(p),
    }


# -- internals -----------------------------------------------------------------------------------


def _targets(cases: list[ProbeCase], settings: ProbeSettings):
    groups = np.array([c.group for c in cases])
    if settings.task == "classification":
        classes = sorted({c.label for c in cases}, key=str)
        y = np.array([classes.index(c.label) for c in cases])
        return y, groups, classes
    return np.array([float(c.label) for c in cases]), groups, []


def _out_of_fold(features, y, groups, cases, settings: ProbeSettings, seed: int, fraction: float, n_classes: int):
    shape = (len(y), n_classes) if settings.task == "classification" else (len(y),)
    predicted = np.full(shape, np.nan)
    for train, test in _outer_splits(y, groups, cases, settings, seed):
        train = _subsample(train, y, groups, fraction, seed) if fraction < 1 else train
        model = _fitted(features[train], y[train], groups[train], settings, seed)
        if settings.task == "classification":
            proba = np.zeros((len(test), n_classes))
            proba[:, model.classes_] = model.predict_proba(features[test])
            predicted[test] = proba
        else:
            predicted[test] = model.predict(features[test])
    return predicted


def _outer_splits(y, groups, cases, settings: ProbeSettings, seed: int):
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    if any(c.split for c in cases):
        train = np.array([i for i, c in enumerate(cases) if c.split == "train"])
        test = np.array([i for i, c in enumerate(cases) if c.split == "test"])
        return [(train, test)]
    if settings.task == "classification":
        splitter = StratifiedGroupKFold(settings.folds, shuffle=True, random_state=seed)
    else:
        splitter = GroupKFold(settings.folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def _subsample(train, y, groups, fraction: float, seed: int):
    """That share of the training subjects (at least one per class present), chosen by seed."""
    rng = np.random.default_rng(seed)
    subjects = np.unique(groups[train])
    kept = set(rng.choice(subjects, max(1, round(fraction * len(subjects))), replace=False))
    chosen = np.array([i for i in train if groups[i] in kept])
    for label in np.unique(y[train]):
        if label not in y[chosen]:
            chosen = np.append(chosen, train[y[train] == label][0])
    return np.sort(chosen)


def _fitted(X, y, groups, settings: ProbeSettings, seed: int):
    from sklearn.exceptions import ConvergenceWarning, FitFailedWarning
    from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedGroupKFold

    estimator, grid = _estimator(settings, seed, len(y))
    classification = settings.task == "classification"
    inner = min(settings.inner_folds, len(np.unique(groups)))
    if classification:
        inner = min(inner, int(np.bincount(y).min()) if np.bincount(y).min() > 0 else 2)
    if inner < 2:  # too few to tune: the grid's middle value
        return estimator.set_params(**{k: v[len(v) // 2] for k, v in grid.items()}).fit(X, y)
    cv = StratifiedGroupKFold(inner, shuffle=True, random_state=seed) if classification else GroupKFold(inner)
    scoring = ("roc_auc_ovr" if len(np.unique(y)) > 2 else "roc_auc") if classification else "neg_mean_absolute_error"
    search = GridSearchCV(estimator, grid, cv=cv, scoring=scoring, error_score=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # a fold of the inner search missing a class
        warnings.simplefilter("ignore", FitFailedWarning)  # ... and the fits on it, scored NaN
        return search.fit(X, y, groups=groups).best_estimator_


def _estimator(settings: ProbeSettings, seed: int, n: int):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    classification = settings.task == "classification"
    if settings.probe == "linear":
        if classification:
            head, grid = LogisticRegression(max_iter=5000), {"head__C": list(np.logspace(-4, 2, 7))}
        else:
            head, grid = Ridge(), {"head__alpha": list(np.logspace(-2, 5, 8))}
    elif settings.probe == "knn":
        head = KNeighborsClassifier() if classification else KNeighborsRegressor()
        grid = {"head__n_neighbors": [k for k in (1, 3, 5, 10, 20) if k < max(2, n * 2 // 3)]}
    else:
        kind = MLPClassifier if classification else MLPRegressor
        head = kind(hidden_layer_sizes=(64,), max_iter=1000, early_stopping=False, random_state=seed)
        grid = {"head__alpha": [1e-3, 1e-1, 10.0]}
    return Pipeline([("scale", StandardScaler()), ("head", head)]), grid


def _metrics(y, predicted, settings: ProbeSettings) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        mean_absolute_error,
        r2_score,
        roc_auc_score,
    )

    if settings.task == "regression":
        return {"mae": float(mean_absolute_error(y, predicted)), "r2": float(r2_score(y, predicted))}
    chosen = predicted.argmax(1)
    present = np.unique(y)
    if predicted.shape[1] == 2:
        auroc = roc_auc_score(y, predicted[:, 1]) if len(present) == 2 else float("nan")
    else:
        scores = predicted[:, present] / predicted[:, present].sum(1, keepdims=True)
        auroc = roc_auc_score(y, scores, multi_class="ovr", labels=present) if len(present) > 2 else float("nan")
    return {
        "auroc": float(auroc),
        "balanced_accuracy": float(balanced_accuracy_score(y, chosen)),
        "accuracy": float(accuracy_score(y, chosen)),
    }


def _predicted(predictions: np.ndarray) -> np.ndarray:
    """Which cases have a prediction (a fixed split predicts its test cases only)."""
    return ~np.isnan(predictions).reshape(len(predictions), -1).any(1)


def _over_resamples(y, groups, settings: ProbeSettings, seed: int, statistic) -> list:
    """`statistic(case indices)` of each bootstrap resample of subjects; for classification,
    resamples with one class (no AUROC) are left out."""
    values = []
    for index in _resamples(groups, settings.bootstrap, seed):
        if settings.task == "classification" and len(np.unique(y[index])) < 2:
            continue
        values.append(statistic(index))
    return values


def _resamples(groups: np.ndarray, count: int, seed: int = 0):
    """Case indices of `count` bootstrap resamples that draw subjects (all of a subject's cases)."""
    rng = np.random.default_rng(seed)
    subjects, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == s) for s in range(len(subjects))]
    for _ in range(count):
        drawn = rng.integers(0, len(subjects), len(subjects))
        yield np.concatenate([members[s] for s in drawn])
