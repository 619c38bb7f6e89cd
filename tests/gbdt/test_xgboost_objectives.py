"""focalkit.xgboost: parity with the built-in objectives, both APIs, early stopping, errors."""

from __future__ import annotations

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")

from gbdt_data import (  # noqa: E402
    PARITY_ROUNDS,
    THREADS,
    imbalanced_multiclass_split,
    imbalanced_split,
    parity_data,
)
from sklearn.metrics import average_precision_score, log_loss  # noqa: E402

from focalkit.gbdt import (  # noqa: E402
    binary_focal_grad_hess,
    predict_proba,
    prior_margin,
    softmax_focal_grad_hess,
)
from focalkit.xgboost import (  # noqa: E402
    binary_focal_metric,
    binary_focal_objective,
    softmax_focal_metric,
    softmax_focal_objective,
)

PARAMS = {"max_depth": 3, "eta": 0.3, "nthread": THREADS, "seed": 0, "tree_method": "hist"}
# The focal metric is the only one XGBoost reports; min_child_weight keeps its default 1, which
# the default hessian="bounded" trains with (test_gbdt_convergence.py).
FOCAL_PARAMS = {**PARAMS, "disable_default_eval_metric": True}


def test_binary_gamma_zero_trains_binary_logistic() -> None:
    X, y = parity_data(2)
    dtrain = xgb.DMatrix(X, label=y, base_margin=np.full(len(y), prior_margin(y)))
    builtin = xgb.train({**PARAMS, "objective": "binary:logistic"}, dtrain, PARITY_ROUNDS)
    focal = xgb.train(
        PARAMS, dtrain, PARITY_ROUNDS, obj=binary_focal_objective(gamma=0.0, alpha=None)
    )
    expected = builtin.predict(dtrain)
    margins = focal.predict(dtrain, output_margin=True)
    np.testing.assert_allclose(predict_proba(margins), expected, atol=1e-5)
    np.testing.assert_allclose(margins, builtin.predict(dtrain, output_margin=True), atol=1e-5)
    assert np.abs(margins).max() > 5  # 50 rounds went somewhere
    focal_default = xgb.train(PARAMS, dtrain, PARITY_ROUNDS, obj=binary_focal_objective())
    assert np.abs(focal_default.predict(dtrain, output_margin=True) - margins).max() > 0.1


def test_softmax_gamma_zero_trains_multi_softprob() -> None:
    X, y = parity_data(3)
    base = np.tile(prior_margin(y, num_class=3), (len(y), 1))
    dtrain = xgb.DMatrix(X, label=y, base_margin=base)
    params = {**PARAMS, "num_class": 3}
    builtin = xgb.train({**params, "objective": "multi:softprob"}, dtrain, PARITY_ROUNDS)
    focal = xgb.train(params, dtrain, PARITY_ROUNDS, obj=softmax_focal_objective(3, gamma=0.0))
    margins = focal.predict(dtrain, output_margin=True)
    assert margins.shape == (len(y), 3)
    np.testing.assert_allclose(predict_proba(margins), builtin.predict(dtrain), atol=1e-5)

    # Without multi:softprob's factor of 2 on the Hessian, the same rounds train another model.
    def exact_hessian(preds: np.ndarray, data: xgb.DMatrix) -> tuple[np.ndarray, np.ndarray]:
        return softmax_focal_grad_hess(preds, data.get_label(), gamma=0.0)

    unscaled = xgb.train(params, dtrain, PARITY_ROUNDS, obj=exact_hessian)
    assert np.abs(unscaled.predict(dtrain, output_margin=True) - margins).max() > 1e-2


def test_both_call_conventions_and_sample_weights() -> None:
    rng = np.random.default_rng(0)
    preds, labels, weight = rng.normal(size=20), rng.integers(0, 2, 20), rng.uniform(0.5, 2, 20)
    objective = binary_focal_objective(gamma=2.0, alpha=0.25)
    train_api = objective(preds, xgb.DMatrix(np.zeros((20, 1)), label=labels, weight=weight))
    sklearn_api = objective(labels, preds, sample_weight=weight)
    expected = binary_focal_grad_hess(preds, labels, weight=weight)
    for grad_hess in (train_api, sklearn_api):
        np.testing.assert_allclose(grad_hess[0], expected[0], rtol=1e-6)
        np.testing.assert_allclose(grad_hess[1], expected[1], rtol=1e-6)
    unweighted = objective(preds, xgb.DMatrix(np.zeros((20, 1)), label=labels))
    np.testing.assert_allclose(unweighted[0] * weight, train_api[0], rtol=1e-6)
    metric = binary_focal_metric(gamma=2.0, alpha=0.25)
    name, value = metric(preds, xgb.DMatrix(np.zeros((20, 1)), label=labels, weight=weight))
    assert name == "focal_loss"
    assert value == pytest.approx(metric(labels, preds, sample_weight=weight))
    assert value != pytest.approx(metric(labels, preds))  # the weights count


def test_multiclass_hessian_factor_and_columns() -> None:
    preds, labels = np.random.default_rng(1).normal(size=(10, 4)), np.arange(10) % 4
    grad, hess = softmax_focal_objective(4, gamma=1.0)(labels, preds)
    exact = softmax_focal_grad_hess(preds, labels, gamma=1.0)
    np.testing.assert_allclose(grad, exact[0])
    np.testing.assert_allclose(hess, 2.0 * exact[1])
    with pytest.raises(
        ValueError,
        match=r"softmax_focal_objective\(\): expected predictions of shape "
        r"\(N, num_class=4\), got \(10, 3\)",
    ):
        softmax_focal_objective(4)(labels, preds[:, :3])
    with pytest.raises(
        ValueError,
        match=r"softmax_focal_metric\(\): expected predictions of shape "
        r"\(N, num_class=4\), got \(40,\)",
    ):
        softmax_focal_metric(4)(labels, preds.ravel())
    with pytest.raises(
        ValueError, match=r"binary_focal_objective\(\): expected predictions of shape \(N,\)"
    ):
        binary_focal_objective()(labels, preds)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: binary_focal_objective(gamma=-1),
            r"binary_focal_objective\(\): gamma must be >= 0, got -1",
        ),
        (
            lambda: binary_focal_objective(alpha=2.0),
            r"binary_focal_objective\(\): alpha must be in \[0, 1\], got 2.0",
        ),
        (
            lambda: softmax_focal_objective(1),
            r"softmax_focal_objective\(\): num_class must be >= 2, got 1",
        ),
        (
            lambda: softmax_focal_objective(3, alpha=[1, 2]),
            r"alpha must have one value per class \(3 classes\), got 2 values",
        ),
        (
            lambda: softmax_focal_metric(3, gamma=-2.0),
            r"softmax_focal_metric\(\): gamma must be >= 0, got -2.0",
        ),
    ],
)
def test_bad_configuration_fails_at_construction(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_bad_labels_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"label values must be 0 or 1, got 2.0"):
        binary_focal_objective()(np.array([0.0, 2.0]), np.zeros(2))
    with pytest.raises(ValueError, match=r"label values must be integers in \[0, 3\), got 1.5"):
        softmax_focal_objective(3)(np.array([0.0, 1.5]), np.zeros((2, 3)))


def test_imbalanced_binary_train_api_early_stops_on_focal_metric() -> None:
    X_train, X_valid, y_train, y_valid = imbalanced_split()
    prior = prior_margin(y_train)
    dtrain = xgb.DMatrix(X_train, label=y_train, base_margin=np.full(len(y_train), prior))
    dvalid = xgb.DMatrix(X_valid, label=y_valid, base_margin=np.full(len(y_valid), prior))
    log: dict[str, dict[str, list[float]]] = {}
    booster = xgb.train(
        FOCAL_PARAMS,
        dtrain,
        num_boost_round=300,
        obj=binary_focal_objective(gamma=2.0, alpha=0.25),
        custom_metric=binary_focal_metric(gamma=2.0, alpha=0.25),
        evals=[(dtrain, "train"), (dvalid, "valid")],
        early_stopping_rounds=10,
        evals_result=log,
        verbose_eval=False,
    )
    history = log["valid"]["focal_loss"]
    assert list(log["valid"]) == ["focal_loss"]  # the only metric: early stopping follows it
    assert len(history) < 300
    assert booster.best_iteration == int(np.argmin(history))
    assert history[booster.best_iteration] < history[0]
    margins = booster.predict(
        dvalid, output_margin=True, iteration_range=(0, booster.best_iteration + 1)
    )
    assert average_precision_score(y_valid, predict_proba(margins)) > 5 * y_valid.mean()


def test_imbalanced_classifier_api_early_stops_on_focal_metric() -> None:
    X_train, X_valid, y_train, y_valid = imbalanced_split()
    model = xgb.XGBClassifier(
        n_estimators=300,
        max_depth=3,
        learning_rate=0.3,
        n_jobs=THREADS,
        random_state=0,
        objective=binary_focal_objective(gamma=2.0, alpha=0.25),
        eval_metric=binary_focal_metric(gamma=2.0, alpha=0.25),
        early_stopping_rounds=10,
        disable_default_eval_metric=True,
    )
    weight = np.where(y_train == 1, 2.0, 1.0)
    model.fit(X_train, y_train, sample_weight=weight, eval_set=[(X_valid, y_valid)], verbose=False)
    history = model.evals_result()["validation_0"]["focal_loss"]
    assert len(history) < 300
    assert model.best_iteration == int(np.argmin(history))
    proba = model.predict_proba(X_valid)[:, 1]  # XGBClassifier applies the sigmoid itself
    assert average_precision_score(y_valid, proba) > 5 * y_valid.mean()


def test_imbalanced_multiclass_both_apis() -> None:
    X_train, X_valid, y_train, y_valid = imbalanced_multiclass_split()
    alpha = [0.2, 0.3, 0.5]
    model = xgb.XGBClassifier(
        n_estimators=200,
        max_depth=3,
        learning_rate=0.3,
        n_jobs=THREADS,
        random_state=0,
        objective=softmax_focal_objective(3, gamma=2.0, alpha=alpha),
        eval_metric=softmax_focal_metric(3, gamma=2.0, alpha=alpha),
        early_stopping_rounds=10,
        disable_default_eval_metric=True,
    )
    model.fit(X_train, y_train, eval_set=[(X_valid, y_valid)], verbose=False)
    history = model.evals_result()["validation_0"]["focal_loss"]
    assert len(history) < 200
    assert model.best_iteration == int(np.argmin(history))
    assert (model.predict(X_valid) == y_valid).mean() > 0.9
    dtrain = xgb.DMatrix(X_train, label=y_train)
    booster = xgb.train(
        {**FOCAL_PARAMS, "num_class": 3},
        dtrain,
        20,
        obj=softmax_focal_objective(3, gamma=2.0, alpha=alpha),
        custom_metric=softmax_focal_metric(3, gamma=2.0, alpha=alpha),
        evals=[(xgb.DMatrix(X_valid, label=y_valid), "valid")],
        verbose_eval=False,
    )
    proba = predict_proba(booster.predict(xgb.DMatrix(X_valid), output_margin=True))
    assert (proba.argmax(axis=1) == y_valid).mean() > 0.9


# ------------------------------------------------------------------------------ metric pairing
# Under a built-in objective XGBoost evaluates a custom metric on probabilities. Read as margins,
# those of the 10-round model below give a log loss of 0.57 where it is 0.21: the metric refuses.


def builtin_then_focal_metric(api: str, classes: int) -> None:
    X, y = parity_data(classes)
    metric = binary_focal_metric(0.0, None) if classes == 2 else softmax_focal_metric(3, 0.0)
    if api == "train":
        objective = "binary:logistic" if classes == 2 else "multi:softprob"
        params = {**PARAMS, "objective": objective, "num_class": classes}
        if classes == 2:
            del params["num_class"]
        dtrain = xgb.DMatrix(X, label=y)
        xgb.train(params, dtrain, 3, evals=[(dtrain, "train")], custom_metric=metric)
    else:
        model = xgb.XGBClassifier(n_estimators=3, n_jobs=THREADS, eval_metric=metric)
        model.fit(X, y, eval_set=[(X, y)], verbose=False)


@pytest.mark.parametrize("api", ["train", "classifier"])
@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (2, r"binary_focal_metric\(\): XGBoost passes a custom metric probabilities, not "
         r"margins, when the objective is one of its own \(here 'binary:logistic'\)"),
        (3, r"softmax_focal_metric\(\): XGBoost passes .* \(here 'multi:softprob'\)"),
    ],
)  # fmt: skip
def test_metric_refuses_probabilities_of_a_builtin_objective(
    api: str, classes: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        builtin_then_focal_metric(api, classes)


def test_metric_on_margins_of_a_builtin_model_is_its_log_loss() -> None:
    X, y = parity_data(2)
    dtrain = xgb.DMatrix(X, label=y)
    booster = xgb.train({**PARAMS, "objective": "binary:logistic"}, dtrain, 10)
    # Booster.eval_set predicts margins unless told otherwise: the focal metric may read them.
    report = booster.eval_set([(dtrain, "train")], feval=binary_focal_metric(0.0, None))
    value = float(report.split("train-focal_loss:")[1].split()[0])
    assert value == pytest.approx(log_loss(y, booster.predict(dtrain)), abs=2e-6)
    assert value < 0.4  # the probabilities read as margins give more than 0.5 here
