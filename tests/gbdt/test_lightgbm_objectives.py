"""focalkit.lightgbm: parity with the built-in objectives, both APIs, early stopping, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

lgb = pytest.importorskip("lightgbm")

from gbdt_data import (  # noqa: E402
    PARITY_ROUNDS,
    THREADS,
    imbalanced_multiclass_split,
    imbalanced_split,
    parity_data,
)
from sklearn.metrics import average_precision_score  # noqa: E402

from focalkit.gbdt import (  # noqa: E402
    binary_focal_grad_hess,
    binary_focal_value,
    predict_proba,
    prior_margin,
    softmax_focal_grad_hess,
)
from focalkit.lightgbm import (  # noqa: E402
    binary_focal_metric,
    binary_focal_objective,
    softmax_focal_metric,
    softmax_focal_objective,
)

PARAMS = {
    "num_leaves": 8,
    "learning_rate": 0.3,
    "num_threads": THREADS,
    "seed": 0,
    "deterministic": True,
    "verbose": -1,
}
# The focal metric is the only one LightGBM reports; lambda_l2 and max_delta_step keep their
# default 0, which the default hessian="bounded" trains with (test_gbdt_convergence.py).
FOCAL_PARAMS = {**PARAMS, "metric": "None"}


def test_binary_gamma_zero_trains_binary() -> None:
    X, y = parity_data(2)
    init = np.full(len(y), prior_margin(y))
    builtin = lgb.train(
        {**PARAMS, "objective": "binary"}, lgb.Dataset(X, y, init_score=init), PARITY_ROUNDS
    )
    focal = lgb.train(
        {**PARAMS, "objective": binary_focal_objective(gamma=0.0, alpha=None)},
        lgb.Dataset(X, y, init_score=init),
        PARITY_ROUNDS,
    )
    margins = focal.predict(X, raw_score=True)
    expected = builtin.predict(X, raw_score=True)
    np.testing.assert_allclose(
        predict_proba(margins + init), predict_proba(expected + init), atol=1e-5
    )
    np.testing.assert_allclose(margins, expected, atol=1e-5)
    assert np.abs(margins).max() > 5


def test_softmax_gamma_zero_trains_multiclass() -> None:
    X, y = parity_data(3)
    init = np.tile(prior_margin(y, num_class=3), (len(y), 1))
    params = {**PARAMS, "num_class": 3}
    builtin = lgb.train(
        {**params, "objective": "multiclass"}, lgb.Dataset(X, y, init_score=init), PARITY_ROUNDS
    )
    focal = lgb.train(
        {**params, "objective": softmax_focal_objective(3, gamma=0.0)},
        lgb.Dataset(X, y, init_score=init),
        PARITY_ROUNDS,
    )
    margins = focal.predict(X, raw_score=True)
    assert margins.shape == (len(y), 3)
    expected = builtin.predict(X, raw_score=True)
    np.testing.assert_allclose(
        predict_proba(margins + init), predict_proba(expected + init), atol=1e-5
    )

    # Without multiclass's K / (K - 1) on the Hessian, the same rounds train another model.
    def exact_hessian(preds: np.ndarray, data: lgb.Dataset) -> tuple[np.ndarray, np.ndarray]:
        return softmax_focal_grad_hess(preds, data.get_label(), gamma=0.0)

    unscaled = lgb.train(
        {**params, "objective": exact_hessian}, lgb.Dataset(X, y, init_score=init), PARITY_ROUNDS
    )
    assert np.abs(unscaled.predict(X, raw_score=True) - margins).max() > 1e-2


def test_both_call_conventions_and_sample_weights() -> None:
    rng = np.random.default_rng(0)
    preds, labels, weight = rng.normal(size=20), rng.integers(0, 2, 20), rng.uniform(0.5, 2, 20)
    objective = binary_focal_objective(gamma=2.0, alpha=0.25)
    dataset = lgb.Dataset(np.zeros((20, 1)), label=labels, weight=weight).construct()
    expected = binary_focal_grad_hess(preds, labels, weight=weight)
    for grad, hess in (objective(preds, dataset), objective(labels, preds, weight)):
        np.testing.assert_allclose(grad, expected[0], rtol=1e-6)
        np.testing.assert_allclose(hess, expected[1], rtol=1e-6)
    metric = binary_focal_metric(gamma=2.0, alpha=0.25)
    name, value, higher_is_better = metric(preds, dataset)
    assert (name, higher_is_better) == ("focal_loss", False)
    assert value == pytest.approx(metric(labels, preds, weight)[1])
    assert value != pytest.approx(metric(labels, preds, None)[1])


def test_multiclass_hessian_factor_and_columns() -> None:
    preds, labels = np.random.default_rng(1).normal(size=(10, 4)), np.arange(10) % 4
    grad, hess = softmax_focal_objective(4, gamma=1.0)(labels, preds, None)
    exact = softmax_focal_grad_hess(preds, labels, gamma=1.0)
    np.testing.assert_allclose(grad, exact[0])
    np.testing.assert_allclose(hess, 4.0 / 3.0 * exact[1])
    with pytest.raises(
        ValueError,
        match=r"softmax_focal_objective\(\): expected predictions of shape "
        r"\(N, num_class=4\), got \(10, 3\)",
    ):
        softmax_focal_objective(4)(labels, preds[:, :3], None)
    with pytest.raises(
        ValueError, match=r"softmax_focal_objective\(\): gamma must be >= 0, got -1"
    ):
        softmax_focal_objective(4, gamma=-1)
    with pytest.raises(ValueError, match=r"label values must be integers in \[0, 4\), got 4"):
        softmax_focal_objective(4)(labels + 1, preds, None)


def test_imbalanced_binary_train_api_early_stops_on_focal_metric() -> None:
    X_train, X_valid, y_train, y_valid = imbalanced_split()
    prior = prior_margin(y_train)
    train_set = lgb.Dataset(X_train, y_train, init_score=np.full(len(y_train), prior))
    valid_set = lgb.Dataset(
        X_valid, y_valid, init_score=np.full(len(y_valid), prior), reference=train_set
    )
    log: dict[str, dict[str, list[float]]] = {}
    booster = lgb.train(
        {**FOCAL_PARAMS, "objective": binary_focal_objective(gamma=2.0, alpha=0.25)},
        train_set,
        num_boost_round=300,
        valid_sets=[valid_set],
        valid_names=["valid"],
        feval=binary_focal_metric(gamma=2.0, alpha=0.25),
        callbacks=[lgb.early_stopping(10, verbose=False), lgb.record_evaluation(log)],
    )
    history = log["valid"]["focal_loss"]
    assert list(log["valid"]) == ["focal_loss"]
    assert len(history) < 300
    assert booster.best_iteration == int(np.argmin(history)) + 1
    assert history[booster.best_iteration - 1] < history[0]
    margins = booster.predict(X_valid, raw_score=True, num_iteration=booster.best_iteration) + prior
    assert average_precision_score(y_valid, predict_proba(margins)) > 5 * y_valid.mean()


# LightGBM 4.7 renames fit(eval_set=) to eval_X/eval_y; eval_set still works on every 4.x.
@pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")
def test_imbalanced_classifier_api_early_stops_on_focal_metric() -> None:
    X_train, X_valid, y_train, y_valid = imbalanced_split()
    prior = prior_margin(y_train)
    model = lgb.LGBMClassifier(
        n_estimators=300,
        num_leaves=8,
        learning_rate=0.3,
        n_jobs=THREADS,
        random_state=0,
        deterministic=True,
        verbose=-1,
        metric="None",
        objective=binary_focal_objective(gamma=2.0, alpha=0.25),
    )
    model.fit(
        X_train,
        y_train,
        sample_weight=np.where(y_train == 1, 2.0, 1.0),
        init_score=np.full(len(y_train), prior),
        eval_set=[(X_valid, y_valid)],
        eval_init_score=[np.full(len(y_valid), prior)],
        eval_metric=binary_focal_metric(gamma=2.0, alpha=0.25),
        callbacks=[lgb.early_stopping(10, verbose=False)],
    )
    history = model.evals_result_["valid_0"]["focal_loss"]
    assert len(history) < 300
    assert model.best_iteration_ == int(np.argmin(history)) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "returning raw scores": expected under a custom objective
        margins = model.predict_proba(X_valid, raw_score=True)
    assert average_precision_score(y_valid, predict_proba(margins + prior)) > 5 * y_valid.mean()


@pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")
def test_imbalanced_multiclass_both_apis() -> None:
    X_train, X_valid, y_train, y_valid = imbalanced_multiclass_split()
    alpha = [0.2, 0.3, 0.5]
    model = lgb.LGBMClassifier(
        n_estimators=200,
        num_leaves=8,
        learning_rate=0.3,
        n_jobs=THREADS,
        random_state=0,
        deterministic=True,
        verbose=-1,
        metric="None",
        objective=softmax_focal_objective(3, gamma=2.0, alpha=alpha),
    )
    model.fit(
        X_train,
        y_train,
        eval_set=[(X_valid, y_valid)],
        eval_metric=softmax_focal_metric(3, gamma=2.0, alpha=alpha),
        callbacks=[lgb.early_stopping(10, verbose=False)],
    )
    history = model.evals_result_["valid_0"]["focal_loss"]
    assert len(history) < 200
    assert model.best_iteration_ == int(np.argmin(history)) + 1
    margins = model.predict(X_valid, raw_score=True)
    assert (margins.argmax(axis=1) == y_valid).mean() > 0.9
    booster = lgb.train(
        {
            **FOCAL_PARAMS,
            "num_class": 3,
            "objective": softmax_focal_objective(3, gamma=2.0, alpha=alpha),
        },
        lgb.Dataset(
            X_train, y_train, init_score=np.tile(prior_margin(y_train, 3), (len(y_train), 1))
        ),
        20,
        feval=softmax_focal_metric(3, gamma=2.0, alpha=alpha),
    )
    proba = predict_proba(booster.predict(X_valid, raw_score=True) + prior_margin(y_train, 3))
    assert (proba.argmax(axis=1) == y_valid).mean() > 0.9


# ------------------------------------------------------------------------------ metric pairing
# Under a built-in objective LightGBM evaluates a custom metric on probabilities, which the focal
# metric would read as margins (a log loss of 0.54 reported for a model at 0.09): it refuses.


@pytest.mark.parametrize(
    ("objective", "shown"),
    [("binary", "binary"), ("cross_entropy", "cross_entropy"), (None, "regression")],
)
def test_train_api_metric_refuses_a_builtin_objective(objective: str | None, shown: str) -> None:
    X, y = parity_data(2)
    params = {**PARAMS, "objective": objective} if objective else PARAMS
    train_set = lgb.Dataset(X, y)
    with pytest.raises(
        ValueError,
        match=r"binary_focal_metric\(\): LightGBM passes a custom metric probabilities, not "
        rf"margins, when the objective is one of its own \(here '{shown}'\)",
    ):
        lgb.train(params, train_set, 3, valid_sets=[train_set], feval=binary_focal_metric(0, None))


@pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")
@pytest.mark.parametrize(("classes", "shown"), [(2, "binary"), (3, "multiclass")])
def test_classifier_metric_refuses_a_builtin_objective(classes: int, shown: str) -> None:
    X, y = parity_data(classes)
    metric = binary_focal_metric(0, None) if classes == 2 else softmax_focal_metric(3, 0)
    model = lgb.LGBMClassifier(n_estimators=3, n_jobs=THREADS, verbose=-1)
    with pytest.raises(ValueError, match=rf"LightGBM passes .* \(here '{shown}'\)"):
        model.fit(X, y, eval_set=[(X, y)], eval_metric=metric)


def test_booster_built_by_hand_with_an_objective_alias() -> None:
    X, y = parity_data(2)
    train_set = lgb.Dataset(X, y)
    booster = lgb.Booster({**PARAMS, "application": "binary"}, train_set)
    booster.update()
    with pytest.raises(ValueError, match=r"\(here 'binary'\)"):
        booster.eval_train(feval=binary_focal_metric())
    focal = lgb.Booster(
        {**FOCAL_PARAMS, "objective": "none"}, lgb.Dataset(X, y)
    )  # a custom objective, as lgb.train writes it
    focal.update(fobj=binary_focal_objective())
    [(_, name, value, _)] = focal.eval_train(feval=binary_focal_metric())
    margins = focal.predict(X, raw_score=True)
    assert (name, value) == ("focal_loss", pytest.approx(binary_focal_value(margins, y).mean()))


# ------------------------------------------------------------------------------ divergence warning
# With LightGBM's lambda_l2=0 and max_delta_step=0 the exact focal Hessian lets the first leaves
# overshoot: an objective with hessian="exact" warns, once, when LightGBM trains it so. The
# default hessian="bounded" converges there (test_gbdt_convergence.py) and does not warn.

UNBOUNDED = (
    r"LightGBM is training this focal objective \(gamma=2.0, hessian='exact'\) with "
    r"lambda_l2=0 and "
)


def divergence_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if "LightGBM is training this focal" in str(w.message)]


def test_default_parameters_warn_once_and_do_diverge() -> None:
    X_train, _, y_train, _ = imbalanced_split()
    prior = prior_margin(y_train)
    objective = binary_focal_objective(gamma=2.0, alpha=0.25, hessian="exact")
    train_set = lgb.Dataset(X_train, y_train, init_score=np.full(len(y_train), prior))
    with pytest.warns(UserWarning, match=r"binary_focal_objective\(\): " + UNBOUNDED):
        booster = lgb.train({**PARAMS, "objective": objective}, train_set, 3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        lgb.train({**PARAMS, "objective": objective}, lgb.Dataset(X_train, y_train), 2)
    assert divergence_warnings(record) == []  # once per objective (lgb.train copies its params)
    # What it warns of: three rounds from the prior already reach margins far beyond any use.
    assert np.abs(booster.predict(X_train, raw_score=True) + prior).max() > 100


@pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")
def test_classifier_with_default_parameters_warns() -> None:
    X, y = parity_data(3)
    model = lgb.LGBMClassifier(
        n_estimators=2,
        n_jobs=THREADS,
        verbose=-1,
        objective=softmax_focal_objective(3, hessian="exact"),
    )
    with pytest.warns(UserWarning, match=r"softmax_focal_objective\(\): " + UNBOUNDED):
        model.fit(X, y)


@pytest.mark.parametrize(
    ("bound", "gamma", "hessian"),
    [
        ({"lambda_l2": 1.0}, 2.0, "exact"),
        ({"reg_lambda": "0.5"}, 2.0, "exact"),
        ({"max_delta_step": 1.0}, 2.0, "exact"),
        ({"max_leaf_output": 0.7}, 2.0, "exact"),
        ({}, 0.0, "exact"),  # gamma=0 is the logistic loss: LightGBM's own binary objective
        ({}, 2.0, "bounded"),  # the default: at least cross-entropy's curvature
    ],
)
def test_bounded_leaves_or_gamma_zero_do_not_warn(
    bound: dict[str, object], gamma: float, hessian: str
) -> None:
    X, y = parity_data(2)
    objective = binary_focal_objective(gamma=gamma, hessian=hessian)  # type: ignore[arg-type]
    params = {**PARAMS, **bound, "objective": objective}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        lgb.train(params, lgb.Dataset(X, y), 2)
        lgb.LGBMClassifier(n_estimators=2, n_jobs=THREADS, **params).fit(X, y)
    assert divergence_warnings(record) == []
