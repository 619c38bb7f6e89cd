"""focalkit.gbdt objective calls against scipy's expit and a NumPy softmax, and a model comparison.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/gbdt_objectives.py [--rounds 7]

Part 1 times one gradient-and-Hessian call on 1,000,000 rows against the cheapest work any
logistic or softmax objective does (the link function alone), interleaved, medians of per-round
ratios. Part 2 trains XGBoost and LightGBM on an imbalanced synthetic problem (1.5 % positives)
with the built-in logistic objective and with the focal objective, and prints PR-AUC and the
recall of the minority class at threshold 0.5 on held-out data.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from scipy.special import expit

from focalkit import gbdt


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _ratio(candidate: Callable[[], object], reference: Callable[[], object], rounds: int) -> str:
    ratios = [_median_seconds(candidate, 3) / _median_seconds(reference, 3) for _ in range(rounds)]
    return f"median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def timing(rounds: int) -> None:
    rng = np.random.default_rng(0)
    margin = rng.normal(scale=3.0, size=1_000_000)
    label = (rng.random(1_000_000) < 0.1).astype(np.int64)
    print(
        "binary_focal_grad_hess / scipy.special.expit, N=1e6: "
        + _ratio(lambda: gbdt.binary_focal_grad_hess(margin, label), lambda: expit(margin), rounds)
    )
    margins = rng.normal(scale=3.0, size=(1_000_000, 5))
    labels = rng.integers(0, 5, 1_000_000)
    print(
        "softmax_focal_grad_hess / NumPy softmax, N=1e6, K=5: "
        + _ratio(
            lambda: gbdt.softmax_focal_grad_hess(margins, labels), lambda: _softmax(margins), rounds
        )
    )


def models() -> None:
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.datasets import make_classification
    from sklearn.metrics import average_precision_score, recall_score

    from focalkit import lightgbm as focal_lgb
    from focalkit import xgboost as focal_xgb

    X, y = make_classification(
        n_samples=40000,
        n_features=20,
        n_informative=6,
        weights=[0.985],
        flip_y=0.005,
        class_sep=0.8,
        random_state=0,
    )
    X_train, y_train, X_test, y_test = X[:30000], y[:30000], X[30000:], y[30000:]
    prior = gbdt.prior_margin(y_train)
    print(f"positives: {y_train.mean():.3%} of 30000 training rows, {y_test.sum()} test positives")

    def report(name: str, margin: np.ndarray) -> None:
        proba = gbdt.predict_proba(margin)
        recall = recall_score(y_test, proba > 0.5)
        print(f"{name}: PR-AUC {average_precision_score(y_test, proba):.3f}, recall {recall:.3f}")

    train = xgb.DMatrix(X_train, label=y_train, base_margin=np.full(y_train.size, prior))
    test = xgb.DMatrix(X_test, base_margin=np.full(y_test.size, prior))
    params = {"max_depth": 4, "eta": 0.1, "nthread": 2, "min_child_weight": 1e-3}
    builtin = xgb.train({**params, "objective": "binary:logistic"}, train, 200)
    report("xgboost binary:logistic", builtin.predict(test, output_margin=True))
    for gamma, alpha in [(2.0, 0.25), (2.0, 0.5)]:
        focal = xgb.train(params, train, 200, obj=focal_xgb.binary_focal_objective(gamma, alpha))
        report(
            f"xgboost focal gamma={gamma} alpha={alpha}", focal.predict(test, output_margin=True)
        )

    lgb_params = {"num_leaves": 15, "learning_rate": 0.1, "num_threads": 2, "verbose": -1}
    dataset = lgb.Dataset(X_train, y_train, init_score=np.full(y_train.size, prior))
    builtin = lgb.train({**lgb_params, "objective": "binary"}, dataset, 200)
    report("lightgbm binary", builtin.predict(X_test, raw_score=True) + prior)
    for gamma, alpha in [(2.0, 0.25), (2.0, 0.5)]:
        objective = focal_lgb.binary_focal_objective(gamma, alpha)
        # Floored focal Hessians can be tiny: bound the leaves (see focalkit.lightgbm).
        focal_params = {**lgb_params, "objective": objective, "lambda_l2": 1.0}
        focal_params["max_delta_step"] = 1.0
        focal = lgb.train(focal_params, dataset, 200)
        report(
            f"lightgbm focal gamma={gamma} alpha={alpha}",
            focal.predict(X_test, raw_score=True) + prior,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    timing(args.rounds)
    models()
