"""Gradient-boosting objectives: one call on a million rows against a NumPy/SciPy reference.

- binary: ``focalkit.gbdt.binary_focal_grad_hess`` (gamma=2, alpha=0.25) against
  ``scipy.special.expit`` on the same margins; goal <= 4x;
- multi-class: ``softmax_focal_grad_hess`` (gamma=2) against a NumPy softmax over the same
  (N, K) margins; goal <= 3x;
- the same through the XGBoost adapter (float32 predictions and labels, as XGBoost passes them)
  and the LightGBM adapter (float64 predictions, float32 labels).

Interleaved: each round times the reference and the candidate (median of ``--repeats`` calls
each) and records their ratio; the report is the median ratio over ``--rounds`` with its spread.

``--quality`` also trains focal and built-in objectives on an imbalanced ``make_classification``
problem (1.5 % positives) in both libraries and prints PR-AUC and minority recall on a held-out
30 %, for BENCHMARKS.md. Run with ``OMP_WAIT_POLICY=PASSIVE``.

``--convergence`` trains the focal objectives (gamma=2; alpha=0.25 binary, none multi-class)
with each library's default parameters for 100 rounds, in both APIs, from margin 0 and from
``prior_margin``, on the problems of tests/gbdt/test_gbdt_convergence.py (2,000 rows: 1, 2.5 and
5 % positives, and 10 classes with frequencies falling as 0.6 ** k), with ``hessian="bounded"``
and ``"exact"``, and prints the training focal loss before and after and the largest margin.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy
from scipy.special import expit

from focalkit.gbdt import binary_focal_grad_hess, softmax_focal_grad_hess


def median_seconds(call: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ratio_line(
    name: str, candidate: Callable[[], Any], reference: Callable[[], Any], args: argparse.Namespace
) -> str:
    candidate(), reference()  # warm up
    ratios, seconds = [], []
    for _ in range(args.rounds):
        base = median_seconds(reference, args.repeats)
        took = median_seconds(candidate, args.repeats)
        ratios.append(took / base)
        seconds.append((took, base))
    took, base = statistics.median(s[0] for s in seconds), statistics.median(s[1] for s in seconds)
    return (
        f"{name}: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, "
        f"max {max(ratios):.2f}); {took * 1e3:.1f} ms vs {base * 1e3:.1f} ms"
    )


def numpy_softmax(margins: np.ndarray) -> np.ndarray:
    e = np.exp(margins - margins.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def speed(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    n = args.rows
    margin = rng.normal(0.0, 3.0, n)
    label = (rng.random(n) < 0.05).astype(np.float64)
    print(
        ratio_line(
            f"binary_focal_grad_hess / expit N={n}",
            lambda: binary_focal_grad_hess(margin, label, gamma=2.0, alpha=0.25),
            lambda: expit(margin),
            args,
        )
    )
    margins = rng.normal(0.0, 3.0, (n, args.classes))
    classes = rng.integers(0, args.classes, n)
    print(
        ratio_line(
            f"softmax_focal_grad_hess / numpy softmax N={n} K={args.classes}",
            lambda: softmax_focal_grad_hess(margins, classes, gamma=2.0),
            lambda: numpy_softmax(margins),
            args,
        )
    )
    margin32, label32 = margin.astype(np.float32), label.astype(np.float32)
    for library in ("xgboost", "lightgbm"):
        try:
            adapter = importlib.import_module(f"focalkit.{library}")
        except ImportError:
            continue
        objective = adapter.binary_focal_objective(gamma=2.0, alpha=0.25)
        # XGBoost passes float32 predictions and labels; LightGBM float64 predictions and
        # float32 labels. Both through the scikit-learn call, (y_true, y_pred).
        preds = margin32 if library == "xgboost" else margin
        print(
            ratio_line(
                f"focalkit.{library} binary objective ({preds.dtype} in) / expit N={n}",
                lambda objective=objective, preds=preds: objective(label32, preds),
                lambda preds=preds: expit(preds.astype(np.float64)),
                args,
            )
        )


def quality(threads: int) -> None:
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.datasets import make_classification
    from sklearn.metrics import average_precision_score, recall_score
    from sklearn.model_selection import train_test_split

    from focalkit import lightgbm as focal_lgb
    from focalkit import xgboost as focal_xgb
    from focalkit.gbdt import predict_proba, prior_margin

    for seed in (0, 1, 2):
        X, y = make_classification(
            n_samples=20_000, n_features=20, n_informative=6, weights=[0.985],
            flip_y=0.0, class_sep=0.8, random_state=seed,
        )  # fmt: skip
        X_train, X_valid, y_train, y_valid = train_test_split(
            X, y, test_size=0.3, stratify=y, random_state=seed
        )
        prior = prior_margin(y_train)

        def report(
            name: str,
            proba: np.ndarray,
            y_valid: Any = y_valid,
            y_train: Any = y_train,
            seed: int = seed,
        ) -> None:
            pr_auc = average_precision_score(y_valid, proba)
            recall = recall_score(y_valid, proba > 0.5)
            # the threshold at the training prevalence ranks rather than calibrates
            top = proba >= np.quantile(proba, 1.0 - y_train.mean())
            print(
                f"seed {seed} {name}: PR-AUC {pr_auc:.3f}, minority recall {recall:.3f} at p > 0.5,"
                f" {recall_score(y_valid, top):.3f} in the top {y_train.mean():.1%}"
            )

        common = {"max_depth": 4, "eta": 0.1, "nthread": threads, "seed": 0}
        dtrain = xgb.DMatrix(X_train, label=y_train, base_margin=np.full(len(y_train), prior))
        dvalid = xgb.DMatrix(X_valid, label=y_valid, base_margin=np.full(len(y_valid), prior))
        for label, params, obj, metric in [
            ("xgboost binary:logistic", {**common, "objective": "binary:logistic"}, None, None),
            (
                "xgboost focal gamma=2 alpha=0.25",
                {**common, "disable_default_eval_metric": True},
                focal_xgb.binary_focal_objective(2.0, 0.25),
                focal_xgb.binary_focal_metric(2.0, 0.25),
            ),
            (
                "xgboost focal gamma=2 alpha=0.25 hessian='exact' min_child_weight=1e-3",
                {**common, "min_child_weight": 1e-3, "disable_default_eval_metric": True},
                focal_xgb.binary_focal_objective(2.0, 0.25, hessian="exact"),
                focal_xgb.binary_focal_metric(2.0, 0.25),
            ),
        ]:
            booster = xgb.train(
                params, dtrain, 1000, evals=[(dvalid, "valid")], obj=obj, custom_metric=metric,
                early_stopping_rounds=30, verbose_eval=False,
            )  # fmt: skip
            margins = booster.predict(
                dvalid, output_margin=True, iteration_range=(0, booster.best_iteration + 1)
            )
            report(f"{label} ({booster.best_iteration + 1} rounds)", predict_proba(margins))

        common_lgb = {"num_leaves": 15, "learning_rate": 0.1, "num_threads": threads,
                      "seed": 0, "verbose": -1}  # fmt: skip
        for label, params, metric in [
            ("lightgbm binary", {**common_lgb, "objective": "binary"}, None),
            (
                "lightgbm focal gamma=2 alpha=0.25",
                {**common_lgb, "objective": focal_lgb.binary_focal_objective(2.0, 0.25),
                 "metric": "None"},
                focal_lgb.binary_focal_metric(2.0, 0.25),
            ),
            (
                "lightgbm focal gamma=2 alpha=0.25 hessian='exact' max_delta_step=1 lambda_l2=1",
                {**common_lgb, "metric": "None", "max_delta_step": 1.0, "lambda_l2": 1.0,
                 "objective": focal_lgb.binary_focal_objective(2.0, 0.25, hessian="exact")},
                focal_lgb.binary_focal_metric(2.0, 0.25),
            ),
        ]:  # fmt: skip
            train_set = lgb.Dataset(X_train, y_train, init_score=np.full(len(y_train), prior))
            valid_set = lgb.Dataset(
                X_valid, y_valid, init_score=np.full(len(y_valid), prior), reference=train_set
            )
            booster = lgb.train(
                params, train_set, 1000, valid_sets=[valid_set], feval=metric,
                callbacks=[lgb.early_stopping(30, verbose=False)],
            )  # fmt: skip
            margins = booster.predict(X_valid, raw_score=True, num_iteration=booster.best_iteration)
            report(f"{label} ({booster.best_iteration} rounds)", predict_proba(margins + prior))


def convergence_problem(rate: float | None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    if rate is not None:
        return make_classification(  # type: ignore[no-any-return]
            n_samples=2000, n_features=6, n_informative=3, weights=[1.0 - rate],
            flip_y=0.0, class_sep=0.8, random_state=0,
        )  # fmt: skip
    frequencies = 0.6 ** np.arange(10)
    return make_classification(  # type: ignore[no-any-return]
        n_samples=2000, n_features=8, n_informative=6, n_classes=10, n_clusters_per_class=1,
        weights=list(frequencies / frequencies.sum()), flip_y=0.0, random_state=0,
    )  # fmt: skip


def convergence(threads: int) -> None:
    import lightgbm as lgb
    import xgboost as xgb

    from focalkit import lightgbm as focal_lgb
    from focalkit import xgboost as focal_xgb
    from focalkit.gbdt import binary_focal_value, prior_margin, softmax_focal_value

    print(f"xgboost {xgb.__version__}, lightgbm {lgb.__version__}, threads {threads}")
    print(
        "hessian  problem  library  api         start  loss before -> after 100 rounds  max|margin|"
    )
    for hessian in ("bounded", "exact"):
        for name, rate in (("1%", 0.01), ("2.5%", 0.025), ("5%", 0.05), ("10-class", None)):
            X, y = convergence_problem(rate)
            classes = None if rate is not None else 10
            for start in ("zero", "prior"):
                if classes is None:
                    base = np.full(len(y), prior_margin(y) if start == "prior" else 0.0)

                    def loss(margins: np.ndarray, y: np.ndarray = y) -> float:
                        return float(binary_focal_value(margins, y).mean())
                else:
                    prior = prior_margin(y, classes) if start == "prior" else np.zeros(classes)
                    base = np.tile(prior, (len(y), 1))

                    def loss(margins: np.ndarray, y: np.ndarray = y) -> float:
                        return float(softmax_focal_value(margins, y).mean())

                extra = {} if classes is None else {"num_class": classes}
                for library, adapter in (("xgboost", focal_xgb), ("lightgbm", focal_lgb)):
                    if classes is None:
                        objective = adapter.binary_focal_objective(hessian=hessian)
                    else:
                        objective = adapter.softmax_focal_objective(classes, hessian=hessian)
                    for api in ("train", "classifier"):
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            if library == "xgboost" and api == "train":
                                dtrain = xgb.DMatrix(X, label=y, base_margin=base)
                                booster = xgb.train(
                                    {"nthread": threads, **extra}, dtrain, 100, obj=objective
                                )
                                margins = booster.predict(dtrain, output_margin=True)
                            elif library == "xgboost":
                                model = xgb.XGBClassifier(objective=objective, n_jobs=threads)
                                model.fit(X, y, base_margin=base)
                                margins = model.predict(X, output_margin=True, base_margin=base)
                            elif api == "train":
                                params = {"objective": objective, "num_threads": threads,
                                          "verbose": -1, **extra}  # fmt: skip
                                booster = lgb.train(params, lgb.Dataset(X, y, init_score=base), 100)
                                margins = booster.predict(X, raw_score=True) + base
                            else:
                                model = lgb.LGBMClassifier(
                                    objective=objective, n_jobs=threads, verbose=-1
                                )
                                model.fit(X, y, init_score=base)
                                margins = model.predict(X, raw_score=True) + base
                        print(
                            f"{hessian:8s} {name:8s} {library:8s} {api:11s} {start:5s}  "
                            f"{loss(base):.4g} -> {loss(margins):.4g}  {np.abs(margins).max():.3g}",
                            flush=True,
                        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quality", action="store_true", help="also PR-AUC and recall")
    parser.add_argument(
        "--convergence", action="store_true", help="only the default-parameter convergence table"
    )
    args = parser.parse_args()
    if args.convergence:
        convergence(args.threads)
        return
    print(
        f"numpy {np.__version__}, scipy {scipy.__version__}, python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    speed(args)
    if args.quality:
        quality(args.threads)


if __name__ == "__main__":
    main()
