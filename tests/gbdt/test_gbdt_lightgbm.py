"""focalkit.lightgbm: gamma=0 trains what LightGBM's built-ins train; both APIs run end to end."""

from __future__ import annotations

import numpy as np
import pytest

from focalkit import gbdt

lgb = pytest.importorskip("lightgbm")
sklearn_datasets = pytest.importorskip("sklearn.datasets")

focal_lgb = pytest.importorskip("focalkit.lightgbm")

PARAMS = {
    "num_leaves": 15,
    "learning_rate": 0.1,
    "min_data_in_leaf": 5,
    "num_threads": 2,
    "deterministic": True,
    "verbose": -1,
    "seed": 0,
}


def _data(num_class=2, n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    score = X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.7, size=n)
    if num_class == 2:
        return X, (score > 0.8).astype(int)
    return X, np.digitize(score, np.quantile(score, np.linspace(0, 1, num_class + 1)[1:-1]))


def test_binary_gamma0_trains_like_binary():
    X, y = _data()
    weight = np.linspace(0.5, 1.5, y.size)
    builtin = lgb.train(
        {**PARAMS, "objective": "binary", "boost_from_average": False},
        lgb.Dataset(X, y, weight=weight),
        50,
    )
    objective = focal_lgb.binary_focal_objective(gamma=0.0, alpha=None, min_hessian=0.0)
    focal = lgb.train({**PARAMS, "objective": objective}, lgb.Dataset(X, y, weight=weight), 50)
    np.testing.assert_allclose(
        focal.predict(X, raw_score=True), builtin.predict(X, raw_score=True), atol=1e-5
    )


def test_softmax_gamma0_trains_like_multiclass():
    X, y = _data(num_class=3)
    builtin = lgb.train(
        {**PARAMS, "objective": "multiclass", "num_class": 3, "boost_from_average": False},
        lgb.Dataset(X, y),
        50,
    )
    objective = focal_lgb.softmax_focal_objective(3, gamma=0.0, min_hessian=0.0)
    focal = lgb.train({**PARAMS, "objective": objective, "num_class": 3}, lgb.Dataset(X, y), 50)
    np.testing.assert_allclose(
        focal.predict(X, raw_score=True), builtin.predict(X, raw_score=True), atol=1e-5
    )


def _imbalanced():
    X, y = sklearn_datasets.make_classification(
        n_samples=3000, n_features=10, n_informative=5, weights=[0.985], flip_y=0, random_state=0
    )
    return X[:2000], y[:2000], X[2000:], y[2000:]


def test_train_api_end_to_end_with_early_stopping_on_the_focal_metric():
    X, y, X_valid, y_valid = _imbalanced()
    prior = gbdt.prior_margin(y)
    train = lgb.Dataset(X, y, init_score=np.full(y.size, prior))
    valid = lgb.Dataset(X_valid, y_valid, init_score=np.full(y_valid.size, prior), reference=train)
    history: dict = {}
    booster = lgb.train(
        # Focal Hessians can be tiny (floored at min_hessian): an L2 penalty keeps leaves finite.
        {
            **PARAMS,
            "objective": focal_lgb.binary_focal_objective(gamma=2.0),
            "metric": "None",
            "lambda_l2": 1.0,
            "max_delta_step": 1.0,
        },
        train,
        300,
        valid_sets=[valid],
        valid_names=["valid"],
        feval=focal_lgb.binary_focal_metric(gamma=2.0),
        callbacks=[lgb.early_stopping(5, verbose=False), lgb.record_evaluation(history)],
    )
    losses = history["valid"]["focal"]
    assert booster.best_iteration < 300  # stopped early, on the focal metric
    assert min(losses) < losses[0]


def test_sklearn_api_end_to_end_with_sample_weights():
    X, y, X_valid, y_valid = _imbalanced()
    model = lgb.LGBMClassifier(
        n_estimators=200,
        reg_lambda=1.0,
        num_leaves=15,
        n_jobs=2,
        verbose=-1,
        metric="None",
        objective=focal_lgb.binary_focal_objective(gamma=2.0, alpha=0.5),
    )
    model.fit(
        X,
        y,
        sample_weight=np.where(y == 1, 5.0, 1.0),
        eval_set=[(X_valid, y_valid)],
        eval_metric=focal_lgb.binary_focal_metric(gamma=2.0, alpha=0.5),
        callbacks=[lgb.early_stopping(5, verbose=False)],
    )
    assert model.best_iteration_ < 200
    proba = gbdt.predict_proba(model.predict(X_valid, raw_score=True))
    assert proba.shape == (1000,)


def test_softmax_in_the_sklearn_api():
    X, y = _data(num_class=3)
    model = lgb.LGBMClassifier(
        n_estimators=10,
        num_leaves=7,
        n_jobs=2,
        verbose=-1,
        metric="None",
        objective=focal_lgb.softmax_focal_objective(3, gamma=1.0, alpha=[1.0, 2.0, 1.0]),
    )
    model.fit(
        X,
        y,
        eval_set=[(X, y)],
        eval_names=["train"],
        eval_metric=focal_lgb.softmax_focal_metric(3, gamma=1.0),
    )
    losses = model.evals_result_["train"]["focal"]
    assert losses[-1] < losses[0]


def test_bad_settings_and_predictions():
    with pytest.raises(ValueError, match=r"gamma must be >= 0"):
        focal_lgb.softmax_focal_objective(3, gamma=-0.5)
    objective = focal_lgb.softmax_focal_objective(4)
    with pytest.raises(ValueError, match=r"predictions must have num_class=4 columns"):
        objective(np.array([0, 1, 2]), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"label values must be in \[0, 4\), got 7"):
        objective(np.array([0, 1, 7]), np.zeros((3, 4)))
