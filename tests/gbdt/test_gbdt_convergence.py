"""With each library's default parameters, the focal objectives converge on imbalanced data.

A user who changes only the objective, starting from margin 0 or from ``prior_margin``, gets a
model whose training focal loss after 100 rounds is below its starting value, with every margin
within +-50, in both APIs of XGBoost and LightGBM. With the exact Hessian they did not:
LightGBM's leaves overshot to margins of 10^3-10^4 from the prior and XGBoost's
``min_child_weight=1`` refused every split at 1 % positives (kept below as tests of why).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

from gbdt_data import CONVERGENCE_PROBLEMS, CONVERGENCE_ROUNDS, convergence_problem  # noqa: E402

from focalkit import lightgbm as focal_lgb  # noqa: E402
from focalkit import xgboost as focal_xgb  # noqa: E402
from focalkit.gbdt import binary_focal_value, prior_margin, softmax_focal_value  # noqa: E402

Array = np.ndarray
LIMIT = 50.0
CLASSES = 10
# One thread: the trees do not depend on it, and a busy machine does not slow 32 small trainings
# down by making two OpenMP threads wait for each other.
THREADS = 1


@functools.cache
def problem(rate: float | None) -> tuple[Array, Array]:
    return convergence_problem(rate)


def start_margin(y: Array, rate: float | None, start: str) -> Array:
    """One starting margin per row: 0, or the prior of the labels."""
    if rate is not None:
        return np.full(len(y), prior_margin(y) if start == "prior" else 0.0)
    prior = prior_margin(y, CLASSES) if start == "prior" else np.zeros(CLASSES)
    return np.tile(prior, (len(y), 1))


def focal_loss(margins: Array, y: Array, rate: float | None) -> float:
    """The mean training focal loss with each objective's default gamma and alpha."""
    if rate is not None:
        return float(binary_focal_value(margins, y).mean())
    return float(softmax_focal_value(margins, y).mean())


def train(library: str, api: str, X: Array, y: Array, base: Array, **objective: Any) -> Array:
    """The margins (starting margin included) after 100 rounds with the library's defaults."""
    classes = base.shape[1] if base.ndim == 2 else None
    adapter = focal_xgb if library == "xgboost" else focal_lgb
    if classes is None:
        focal = adapter.binary_focal_objective(**objective)
    else:
        focal = adapter.softmax_focal_objective(classes, **objective)
    multiclass = {} if classes is None else {"num_class": classes}
    if library == "xgboost" and api == "train":
        dtrain = xgb.DMatrix(X, label=y, base_margin=base)
        params = {"nthread": THREADS, "seed": 0, **multiclass}
        booster = xgb.train(params, dtrain, CONVERGENCE_ROUNDS, obj=focal)
        return np.asarray(booster.predict(dtrain, output_margin=True))
    if library == "xgboost":
        model = xgb.XGBClassifier(
            n_estimators=CONVERGENCE_ROUNDS, objective=focal, n_jobs=THREADS, random_state=0
        )
        model.fit(X, y, base_margin=base)
        return np.asarray(model.predict(X, output_margin=True, base_margin=base))
    if api == "train":
        params = {"objective": focal, "num_threads": THREADS, "seed": 0, "verbose": -1}
        train_set = lgb.Dataset(X, y, init_score=base)
        booster = lgb.train({**params, **multiclass}, train_set, CONVERGENCE_ROUNDS)
        return np.asarray(booster.predict(X, raw_score=True)) + base
    model = lgb.LGBMClassifier(
        n_estimators=CONVERGENCE_ROUNDS, objective=focal, n_jobs=THREADS, random_state=0, verbose=-1
    )
    model.fit(X, y, init_score=base)
    return np.asarray(model.predict(X, raw_score=True)) + base


@pytest.mark.parametrize("start", ["zero", "prior"])
@pytest.mark.parametrize(
    ("library", "api"),
    [
        ("xgboost", "train"),
        ("xgboost", "classifier"),
        ("lightgbm", "train"),
        ("lightgbm", "classifier"),
    ],
)
@pytest.mark.parametrize(
    ("name", "rate"), CONVERGENCE_PROBLEMS, ids=[p[0] for p in CONVERGENCE_PROBLEMS]
)
def test_default_parameters_converge(
    name: str, rate: float | None, library: str, api: str, start: str
) -> None:
    X, y = problem(rate)
    base = start_margin(y, rate, start)
    margins = train(library, api, X, y, base)
    assert np.isfinite(margins).all()
    assert np.abs(margins).max() < LIMIT
    assert focal_loss(margins, y, rate) < 0.5 * focal_loss(base, y, rate)  # learnt, not stalled


# ------------------------------------------------------------------------------ why not exact
# What the exact Hessian does with the same defaults (hessian="exact" keeps it available).


@pytest.mark.filterwarnings("ignore:.*LightGBM is training this focal objective")
def test_exact_hessian_overshoots_in_lightgbm() -> None:
    X, y = problem(0.01)
    base = start_margin(y, 0.01, "prior")
    margins = train("lightgbm", "train", X, y, base, hessian="exact")
    assert np.abs(margins).max() > 100 * LIMIT
    assert focal_loss(margins, y, 0.01) > 10 * focal_loss(base, y, 0.01)


def test_exact_hessian_makes_no_split_in_xgboost() -> None:
    X, y = problem(0.01)
    base = start_margin(y, 0.01, "prior")
    margins = train("xgboost", "train", X, y, base, hessian="exact")
    np.testing.assert_allclose(margins, base, atol=1e-3)  # min_child_weight=1 > sum of h
