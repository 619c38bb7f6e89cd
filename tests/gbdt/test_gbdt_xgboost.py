"""focalkit.xgboost: gamma=0 trains what the built-in objectives train; both APIs run end to end."""

from __future__ import annotations

import numpy as np
import pytest

from focalkit import gbdt

xgb = pytest.importorskip("xgboost")
sklearn_datasets = pytest.importorskip("sklearn.datasets")

focal_xgb = pytest.importorskip("focalkit.xgboost")

PARAMS = {"max_depth": 3, "eta": 0.3, "nthread": 2, "seed": 0}


def _data(num_class=2, n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    score = X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.7, size=n)
    if num_class == 2:
        return X, (score > 0.8).astype(int)
    return X, np.digitize(score, np.quantile(score, np.linspace(0, 1, num_class + 1)[1:-1]))


def test_binary_gamma0_trains_like_binary_logistic():
    X, y = _data()
    weight = np.linspace(0.5, 1.5, y.size)
    train = xgb.DMatrix(X, label=y, weight=weight, base_margin=np.zeros(y.size))
    builtin = xgb.train({**PARAMS, "objective": "binary:logistic"}, train, 50)
    focal = xgb.train(
        PARAMS,
        train,
        50,
        obj=focal_xgb.binary_focal_objective(gamma=0.0, alpha=None, min_hessian=1e-16),
    )
    np.testing.assert_allclose(
        focal.predict(train, output_margin=True),
        builtin.predict(train, output_margin=True),
        atol=1e-5,
    )


def test_softmax_gamma0_trains_like_softprob():
    X, y = _data(num_class=3)
    train = xgb.DMatrix(X, label=y, base_margin=np.zeros((y.size, 3)))
    builtin = xgb.train({**PARAMS, "objective": "multi:softprob", "num_class": 3}, train, 50)
    focal = xgb.train(
        {**PARAMS, "num_class": 3},
        train,
        50,
        obj=focal_xgb.softmax_focal_objective(3, gamma=0.0, min_hessian=5e-17),
    )
    np.testing.assert_allclose(
        focal.predict(train, output_margin=True),
        builtin.predict(train, output_margin=True),
        atol=1e-5,
    )


def _imbalanced():
    X, y = sklearn_datasets.make_classification(
        n_samples=3000, n_features=10, n_informative=5, weights=[0.985], flip_y=0, random_state=0
    )
    return X[:2000], y[:2000], X[2000:], y[2000:]


def test_train_api_end_to_end_with_early_stopping_on_the_focal_metric():
    X, y, X_valid, y_valid = _imbalanced()
    assert 0.005 < y.mean() < 0.03
    train = xgb.DMatrix(X, label=y, base_margin=np.full(y.size, gbdt.prior_margin(y)))
    valid = xgb.DMatrix(
        X_valid, label=y_valid, base_margin=np.full(y_valid.size, gbdt.prior_margin(y))
    )
    history: dict = {}
    booster = xgb.train(
        # Focal Hessians are small: the default min_child_weight=1 would forbid every split.
        {**PARAMS, "disable_default_eval_metric": 1, "min_child_weight": 1e-3},
        train,
        200,
        obj=focal_xgb.binary_focal_objective(gamma=2.0, alpha=0.25),
        custom_metric=focal_xgb.binary_focal_metric(gamma=2.0, alpha=0.25),
        evals=[(valid, "valid")],
        early_stopping_rounds=5,
        evals_result=history,
        verbose_eval=False,
    )
    losses = history["valid"]["focal"]
    assert booster.best_iteration < 199  # stopped early, on the focal metric
    assert min(losses) < losses[0]
    proba = gbdt.predict_proba(booster.predict(valid, output_margin=True))
    assert proba.shape == (1000,)


def test_sklearn_api_end_to_end_with_sample_weights():
    X, y, X_valid, y_valid = _imbalanced()
    model = xgb.XGBClassifier(
        n_estimators=100,
        min_child_weight=1e-3,
        max_depth=3,
        n_jobs=2,
        early_stopping_rounds=5,
        objective=focal_xgb.binary_focal_objective(gamma=2.0, alpha=0.5),
        eval_metric=focal_xgb.binary_focal_metric(gamma=2.0, alpha=0.5),
    )
    weight = np.where(y == 1, 5.0, 1.0)
    model.fit(X, y, sample_weight=weight, eval_set=[(X_valid, y_valid)], verbose=False)
    proba = model.predict_proba(X_valid)
    assert proba.shape == (1000, 2)
    assert np.allclose(proba.sum(1), 1.0)
    assert model.best_iteration < 99


def test_softmax_metric_and_objective_in_the_sklearn_api():
    X, y = _data(num_class=3)
    model = xgb.XGBClassifier(
        n_estimators=10,
        max_depth=3,
        n_jobs=2,
        objective=focal_xgb.softmax_focal_objective(3, gamma=1.0, alpha=[1.0, 2.0, 1.0]),
        eval_metric=focal_xgb.softmax_focal_metric(3, gamma=1.0, alpha=[1.0, 2.0, 1.0]),
    )
    model.fit(X, y, eval_set=[(X, y)], verbose=False)
    losses = model.evals_result()["validation_0"]["metric"]
    assert losses[-1] < losses[0]


def test_bad_settings_and_predictions():
    with pytest.raises(ValueError, match=r"gamma must be >= 0"):
        focal_xgb.binary_focal_objective(gamma=-1.0)
    with pytest.raises(ValueError, match=r"num_class must be an int >= 2"):
        focal_xgb.softmax_focal_objective(1)
    objective = focal_xgb.softmax_focal_objective(3)
    with pytest.raises(
        ValueError, match=r"predictions must have num_class=3 columns, got shape \(4, 2\)"
    ):
        objective(np.array([0, 1, 2, 0]), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"label values must be in \{0, 1\}"):
        focal_xgb.binary_focal_objective()(np.array([0, 3]), np.zeros(2))
