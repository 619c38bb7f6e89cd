"""focalkit.dask, and the focal objectives on a Dask cluster of two worker processes (loopback).

One cluster serves the module; every call that waits on it is bounded (``within``), so a hung
worker fails its test instead of the suite. Data are spread over both workers in partitions of
unequal size and class mix, where per-partition statistics and per-worker metrics differ from
the global ones.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")
xgb_dask = pytest.importorskip("xgboost.dask")
lgb = pytest.importorskip("lightgbm")
lgb_dask = pytest.importorskip("lightgbm.dask")

from sklearn.datasets import make_classification  # noqa: E402

import focalkit  # noqa: E402
from focalkit import dask as focal_dask  # noqa: E402
from focalkit import lightgbm as focal_lgb  # noqa: E402
from focalkit import xgboost as focal_xgb  # noqa: E402
from focalkit.gbdt import binary_focal_value, prior_margin, softmax_focal_value  # noqa: E402

SECONDS = 60  # the bound on each call that waits on the cluster
ROUNDS = 20


def within(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, failing the test if it takes more than SECONDS.

    A daemon thread: a call stuck on the cluster neither blocks the test nor the interpreter's
    exit; the cluster's teardown stops its workers.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call(*args, **kwargs)
        except BaseException as error:  # handed to the test below
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(SECONDS)
    if thread.is_alive():
        pytest.fail(f"{getattr(call, '__name__', call)} took more than {SECONDS} s on the cluster")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        yield dask_client


def spread(client: Any, array: np.ndarray, cuts: Sequence[int]) -> Any:
    """``array`` as a Dask Array in partitions ending at ``cuts``, stored on alternate workers."""
    workers = sorted(client.scheduler_info()["workers"])
    parts = []
    for index, (start, stop) in enumerate(zip([0, *cuts[:-1]], cuts, strict=True)):
        block = array[start:stop]
        future = client.scatter(block, workers=[workers[index % len(workers)]], hash=False)
        parts.append(da.from_delayed(future, shape=block.shape, dtype=block.dtype))
    return da.concatenate(parts)


def long_tail_labels(rows: int, classes: int, seed: int) -> np.ndarray:
    """Labels with frequencies falling as 0.6 ** k, sorted in part: partitions differ in mix."""
    frequencies = 0.6 ** np.arange(classes)
    labels = np.random.default_rng(seed).choice(classes, rows, p=frequencies / frequencies.sum())
    labels[: rows // 3] = np.sort(labels[: rows // 3])
    return labels


CUTS = [7, 400, 1500, 1503, 3000]  # five partitions of 7, 393, 1100, 3 and 1497 rows


# ------------------------------------------------------------------------------ statistics


def test_module_imports_the_real_dask_and_focalkit_does_not_import_it() -> None:
    script = (
        "import sys, focalkit, focalkit.gbdt\n"
        "assert 'dask' not in sys.modules, 'import focalkit imported dask'\n"
        "import focalkit.dask as focal_dask\n"
        "import dask, pathlib\n"
        "assert focal_dask.da is sys.modules['dask.array']\n"
        "assert pathlib.Path(dask.__file__).parent.name == 'dask', dask.__file__\n"
        "assert 'focalkit' not in pathlib.Path(dask.__file__).parts\n"
        "print(focal_dask.__name__, dask.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=SECONDS
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["focalkit.dask", "dask"]


def test_without_dask_the_module_says_how_to_install_it() -> None:
    script = (
        "import sys, importlib.abc\n"
        "class NoDask(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'dask' or name.startswith('dask.'):\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, NoDask())\n"
        "import focalkit, focalkit.gbdt\n"
        "try:\n"
        "    import focalkit.dask\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=SECONDS
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'focalkit.dask needs Dask: pip install "focalkit[dask]"'


@pytest.mark.parametrize("kind", ["array", "series", "frame"])
def test_global_counts_weights_and_prior_equal_numpy_on_the_whole(client: Any, kind: str) -> None:
    labels = long_tail_labels(CUTS[-1], 10, seed=0)
    binary = (labels == 9) | (labels == 6)  # 2.3 % positives: 3.4 %, 2.1 % and 0 in 3 partitions
    if kind == "array":
        dask_labels, dask_binary = spread(client, labels, CUTS), spread(client, binary, CUTS)
    else:
        divisions = [0, *CUTS[:-1], CUTS[-1] - 1]
        frame = pd.DataFrame({"label": labels, "binary": binary.astype(np.float32)})
        partitioned = dd.from_pandas(frame, npartitions=1).repartition(divisions=divisions)
        columns = partitioned.persist()
        dask_labels = columns["label"] if kind == "series" else columns[["label"]]
        dask_binary = columns["binary"] if kind == "series" else columns[["binary"]]
    counts = within(focal_dask.class_counts, dask_labels, 10)
    np.testing.assert_array_equal(counts, focalkit.class_counts(labels, 10))
    assert counts.dtype == np.int64
    weights = focalkit.class_weights(counts, "effective_number", "balanced", beta=0.99)
    np.testing.assert_array_equal(
        weights, focalkit.class_weights(np.bincount(labels), "effective_number", "balanced", 0.99)
    )
    per_row = focal_dask.sample_weights(dask_labels, weights)
    np.testing.assert_array_equal(np.asarray(within(per_row.compute)), weights[labels])
    if kind == "array":
        assert per_row.chunks == dask_labels.chunks
    assert within(focal_dask.prior_margin, dask_binary) == prior_margin(binary)
    np.testing.assert_array_equal(
        within(focal_dask.prior_margin, dask_labels, num_class=10), prior_margin(labels, 10)
    )
    # the partitions differ in mix: a prior, counts or weights of one would be wrong
    rates = [binary[start:stop].mean() for start, stop in zip([0, *CUTS[:-1]], CUTS, strict=True)]
    assert min(rates) == 0
    assert max(rates) > 1.4 * binary.mean()


def test_margin_per_row_is_partitioned_like_the_labels(client: Any) -> None:
    labels = long_tail_labels(CUTS[-1], 3, seed=1)
    dask_labels = spread(client, labels, CUTS)
    prior = prior_margin(labels, 3)
    margins = focal_dask.margin_per_row(prior, dask_labels)
    assert margins.chunks == (dask_labels.chunks[0], (3,))
    np.testing.assert_array_equal(within(margins.compute), np.tile(prior, (len(labels), 1)))
    series = dd.from_pandas(pd.Series(labels), npartitions=4)
    binary = focal_dask.margin_per_row(-2.5, series)
    assert binary.npartitions == 4
    np.testing.assert_array_equal(within(binary.compute).to_numpy(), np.full(len(labels), -2.5))
    frame = within(focal_dask.margin_per_row(prior, series).compute)
    assert frame.shape == (len(labels), 3)
    np.testing.assert_array_equal(frame.index, series.index.compute())


def test_bad_labels_raise_with_the_function_name(client: Any) -> None:
    labels = spread(client, np.array([0, 1, 2, 1, 3]), [2, 5])
    with pytest.raises(ValueError, match=r"prior_margin\(\): label values must be 0 or 1, got 2"):
        within(focal_dask.prior_margin, labels)
    with pytest.raises(ValueError, match=r"class_counts\(\): labels must be in \[0, 3\), got 3"):
        within(focal_dask.class_counts, labels, 3)
    with pytest.raises(
        ValueError, match=r"sample_weights\(\): label values must be integers in \[0, 2\), got 2"
    ):
        within(focal_dask.sample_weights(labels, [1.0, 2.0]).compute)
    with pytest.raises(ValueError, match=r"prior_margin\(\): class 4 has no samples in labels"):
        within(focal_dask.prior_margin, labels, num_class=5)
    with pytest.raises(TypeError, match=r"class_counts\(\): labels must be a Dask Array, Series"):
        focal_dask.class_counts(np.array([0, 1]), 2)


# ------------------------------------------------------------------------------ evaluation


def test_exact_global_evaluation_equals_the_single_process_value(client: Any) -> None:
    rng = np.random.default_rng(2)
    rows = CUTS[-1]
    labels = long_tail_labels(rows, 4, seed=2)
    margins = rng.normal(0.0, 3.0, (rows, 4))
    weight = rng.uniform(0.2, 3.0, rows)
    dask_margins = spread(client, margins, [100, 2000, rows]).rechunk({1: 2})
    dask_labels, dask_weight = spread(client, labels, CUTS), spread(client, weight, [5, 50, rows])
    alpha = [0.5, 1.0, 2.0, 4.0]
    expected = focal_xgb.softmax_focal_metric(4, gamma=1.5, alpha=alpha)(
        labels, margins, sample_weight=weight
    )
    value = within(
        focal_dask.softmax_focal_mean,
        dask_margins,
        dask_labels,
        gamma=1.5,
        alpha=alpha,
        weight=dask_weight,
    )
    assert value == pytest.approx(expected, rel=1e-12)
    # the unweighted mean of a binary model, margins and labels from one DataFrame
    binary = (labels == 3).astype(np.float64)
    frame = dd.from_pandas(pd.DataFrame({"margin": margins[:, 0], "label": binary}), npartitions=5)
    value = within(focal_dask.binary_focal_mean, frame["margin"], frame["label"], gamma=2.0)
    assert value == pytest.approx(binary_focal_value(margins[:, 0], binary).mean(), rel=1e-12)
    columns = dd.from_pandas(pd.DataFrame(margins), npartitions=3)
    value = within(focal_dask.softmax_focal_mean, columns, dd.from_pandas(pd.Series(labels), 3))
    assert value == pytest.approx(softmax_focal_value(margins, labels).mean(), rel=1e-12)


def test_evaluation_checks_its_inputs(client: Any) -> None:
    margins = spread(client, np.zeros(10), [4, 10])
    with pytest.raises(ValueError, match=r"binary_focal_mean\(\): expected label with 10 rows"):
        focal_dask.binary_focal_mean(margins, da.zeros(9, chunks=9))
    series = dd.from_pandas(pd.Series(np.zeros(10)), npartitions=3)
    other = dd.from_pandas(pd.Series(np.zeros(10)), npartitions=2)
    with pytest.raises(ValueError, match=r"label has 2 partitions and margins 3"):
        focal_dask.binary_focal_mean(series, other)
    with pytest.raises(ValueError, match=r"binary_focal_mean\(\): expected predictions of shape"):
        within(focal_dask.binary_focal_mean, da.zeros((10, 2), chunks=5), da.zeros(10, chunks=5))
    with pytest.raises(ValueError, match=r"softmax_focal_mean\(\): margins must be 2-D"):
        focal_dask.softmax_focal_mean(margins, margins)
    nan = spread(client, np.array([0.0, np.nan, 1.0]), [1, 3])
    assert np.isnan(within(focal_dask.binary_focal_mean, nan, da.ones(3, chunks=2)))


# ------------------------------------------------------------------------------ training


@pytest.fixture
def binary_data(client: Any) -> dict[str, Any]:
    """2,000 training and 1,000 validation rows, about 4 % positives, on both workers.

    Fresh for each test: LightGBM trains each partition on a worker that holds it, and an
    earlier training may have copied partitions to the other worker; with copies, the rows can
    be split over the machines in another way. And the features take 5 values each: LightGBM's
    machines each find the bins of some of the features from their own rows, and which machine
    gets which features varies from one training to the next; with continuous features the
    bins, and so the trees, varied (two models in turn), with 5 values every machine finds them.
    """
    X, y = make_classification(
        n_samples=3000, n_features=6, n_informative=3, weights=[0.96], random_state=0
    )
    X = np.clip(np.round(X), -2.0, 2.0)
    train_cuts, valid_cuts = [300, 2000], [150, 1000]  # unequal parts
    X_train, y_train = spread(client, X[:2000], train_cuts), spread(client, y[:2000], train_cuts)
    X_valid = spread(client, X[2000:], valid_cuts)
    y_valid = spread(client, y[2000:], valid_cuts)
    prior = within(focal_dask.prior_margin, y_train)
    # Stored beside the labels they are computed from, so that each partition's rows, labels and
    # margins are on one worker, and LightGBM splits the rows over its machines the same way in
    # every training (its bins, and so its trees, depend on that split).
    base_train, base_valid = client.persist(
        [focal_dask.margin_per_row(prior, y_train), focal_dask.margin_per_row(prior, y_valid)]
    )
    return {
        "X": X,
        "y": y,
        "X_train": X_train,
        "y_train": y_train,
        "X_valid": X_valid,
        "y_valid": y_valid,
        "prior": prior,
        "base_train": base_train,
        "base_valid": base_valid,
    }


def xgboost_train(client: Any, data: dict[str, Any], gamma: float, **train: Any) -> Any:
    dtrain = xgb_dask.DaskDMatrix(
        client, data["X_train"], data["y_train"], base_margin=data["base_train"]
    )
    params = {"nthread": 1, "seed": 0, **train.pop("params", {})}
    return xgb_dask.train(client, params, dtrain, ROUNDS, **train), dtrain


def test_xgboost_train_focal_early_stopping_and_the_metric_caveat(
    client: Any, binary_data: dict[str, Any]
) -> None:
    data = binary_data
    dvalid = xgb_dask.DaskDMatrix(
        client, data["X_valid"], data["y_valid"], base_margin=data["base_valid"]
    )
    output, _ = within(
        xgboost_train,
        client,
        data,
        2.0,
        params={"disable_default_eval_metric": True},
        obj=focal_xgb.binary_focal_objective(),
        custom_metric=focal_xgb.binary_focal_metric(),
        evals=[(dvalid, "valid")],
        early_stopping_rounds=5,
    )
    booster, history = output["booster"], output["history"]["valid"]["focal_loss"]
    assert history[booster.best_iteration] < 0.5 * history[0]
    margins = xgb_dask.predict(
        client, booster, dvalid, output_margin=True, iteration_range=(0, len(history))
    )
    exact = within(focal_dask.binary_focal_mean, margins, data["y_valid"])
    single = binary_focal_value(within(margins.compute), data["y"][2000:]).mean()
    assert exact == pytest.approx(single, rel=1e-12)
    # XGBoost averages each worker's mean over its own rows (150 and 850 here): not the mean
    assert abs(history[-1] - exact) > 1e-3 * exact


def test_xgboost_train_gamma_zero_equals_binary_logistic(
    client: Any, binary_data: dict[str, Any]
) -> None:
    focal, dtrain = within(
        xgboost_train, client, binary_data, 0.0, obj=focal_xgb.binary_focal_objective(0.0, None)
    )
    builtin, _ = within(
        xgboost_train, client, binary_data, 0.0, params={"objective": "binary:logistic"}
    )
    margins = within(xgb_dask.predict(client, focal["booster"], dtrain, output_margin=True).compute)
    expected = within(
        xgb_dask.predict(client, builtin["booster"], dtrain, output_margin=True).compute
    )
    np.testing.assert_allclose(margins, expected, atol=1e-5)
    assert np.abs(margins - binary_data["prior"]).max() > 1.0  # the trees did something


def test_dask_xgb_classifier_multiclass_with_global_alpha(client: Any) -> None:
    X, _ = make_classification(n_samples=2000, n_features=6, n_informative=4, random_state=3)
    labels = long_tail_labels(2000, 4, seed=3)
    X[:, :4] += 2.0 * np.eye(4)[labels]  # informative about the label
    dask_X, dask_y = spread(client, X, [500, 2000]), spread(client, labels, [500, 2000])
    counts = within(focal_dask.class_counts, dask_y, 4)
    alpha = focalkit.class_weights(counts, "inverse_sqrt", "mean")
    prior = within(focal_dask.prior_margin, dask_y, num_class=4)
    base = focal_dask.margin_per_row(prior, dask_y)
    model = xgb_dask.DaskXGBClassifier(
        n_estimators=ROUNDS,
        objective=focal_xgb.softmax_focal_objective(4, alpha=alpha),
        eval_metric=focal_xgb.softmax_focal_metric(4, alpha=alpha),
        disable_default_eval_metric=True,
        early_stopping_rounds=5,
        n_jobs=1,
        random_state=0,
    )
    model.client = client
    within(
        model.fit, dask_X, dask_y, base_margin=base, eval_set=[(dask_X, dask_y)],
        base_margin_eval_set=[base], verbose=False,
    )  # fmt: skip
    history = model.evals_result()["validation_0"]["focal_loss"]
    assert history[-1] < 0.5 * history[0]
    margins = model.predict(dask_X, output_margin=True, base_margin=base)
    exact = within(focal_dask.softmax_focal_mean, margins, dask_y, alpha=alpha)
    expected = softmax_focal_value(within(margins.compute), labels, alpha=alpha).mean()
    assert exact == pytest.approx(expected, rel=1e-12)


@pytest.mark.filterwarnings("ignore:Parameter n_jobs will be ignored")  # LightGBM's own default
def test_dask_lgbm_classifier_focal_and_the_metric_caveat(
    client: Any, binary_data: dict[str, Any]
) -> None:
    data = binary_data
    model = lgb_dask.DaskLGBMClassifier(
        client=client,
        n_estimators=ROUNDS,
        objective=focal_lgb.binary_focal_objective(),
        random_state=0,
        verbose=-1,
    )
    within(
        model.fit, data["X_train"], data["y_train"], init_score=data["base_train"],
        eval_X=(data["X_valid"],), eval_y=(data["y_valid"],),
        eval_init_score=[data["base_valid"]], eval_metric=focal_lgb.binary_focal_metric(),
    )  # fmt: skip
    history = model.evals_result_["valid_0"]["focal_loss"]
    margins = model.predict(data["X_valid"], raw_score=True) + data["prior"]
    exact = within(focal_dask.binary_focal_mean, margins, data["y_valid"])
    single = binary_focal_value(within(margins.compute), data["y"][2000:]).mean()
    assert exact == pytest.approx(single, rel=1e-12)
    start = binary_focal_value(np.full(1000, data["prior"]), data["y"][2000:]).mean()
    assert exact < 0.5 * start
    # LightGBM reports the metric of one worker's part of the validation rows
    assert abs(history[-1] - exact) > 1e-3 * exact


@pytest.mark.filterwarnings("ignore:Parameter n_jobs will be ignored")
def test_dask_lgbm_classifier_gamma_zero_equals_binary(
    client: Any, binary_data: dict[str, Any]
) -> None:
    data = binary_data
    common = {"client": client, "n_estimators": ROUNDS, "random_state": 0, "verbose": -1}
    focal = lgb_dask.DaskLGBMClassifier(
        objective=focal_lgb.binary_focal_objective(0.0, None), **common
    )
    builtin = lgb_dask.DaskLGBMClassifier(objective="binary", **common)
    for model in (focal, builtin):
        within(model.fit, data["X_train"], data["y_train"], init_score=data["base_train"])
    margins = within(focal.predict(data["X_train"], raw_score=True).compute)
    expected = within(builtin.predict(data["X_train"], raw_score=True).compute)
    np.testing.assert_allclose(margins, expected, atol=1e-5)
    assert np.abs(margins).max() > 1.0
