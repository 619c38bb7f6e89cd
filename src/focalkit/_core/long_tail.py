r"""Per-class settings for long-tailed labels from class counts: NumPy in, NumPy out.

:func:`logit_adjustment` gives the offset that ``logit_offset=`` adds to the logits (logit
adjustment, balanced softmax); :func:`ldam_margins` gives the margins of ``ldam_loss``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from focalkit._core import validation
from focalkit._core.class_weights import counts_array


def _check_every_class_present(n: NDArray[np.float64], what: str, where: str) -> None:
    """Raise, naming the first class of count 0, whose ``what`` would not be finite."""
    if np.all(n > 0):
        return
    empty = int(np.flatnonzero(n == 0)[0])
    raise ValueError(
        f"{where}: class {empty} has count 0, so {what} is not finite; every class needs at "
        "least one sample (drop the class, or count it from a larger sample)"
    )


def logit_adjustment(counts: ArrayLike, tau: float = 1.0) -> NDArray[np.float64]:
    r"""The logit adjustment :math:`\tau \log \pi_c`, with :math:`\pi_c = n_c / \sum_j n_j`.

    Passed as ``logit_offset=`` to :func:`~focalkit.softmax_focal_loss` (or
    :class:`~focalkit.FocalLoss`, :func:`~focalkit.linear_softmax_focal_loss`), it is added to the
    logits during training only; predict with the plain logits. With ``gamma=0`` the loss is then
    the logit-adjusted cross-entropy of Menon et al.,

    .. math::
        \ell = -\log \frac{e^{x_y + \tau \log \pi_y}}{\sum_c e^{x_c + \tau \log \pi_c}},

    which for ``tau=1`` is the balanced softmax of Ren et al. Rare classes get a large negative
    offset, so the model must give them larger logits to reach the same loss: the margin each
    class is trained to keep grows as its count falls.

    Args:
        counts: Sample counts per class, shape ``(C,)``; each must be positive (a class of count 0
            has no finite log-prior, and the error names it).
        tau: Temperature :math:`\tau \ge 0`. Default: 1 (balanced softmax).

    Returns:
        A ``float64`` array of shape ``(C,)``, all ``<= 0``.

    Example:
        >>> logit_adjustment([100, 200, 50, 10]).round(4)
        array([-1.2809, -0.5878, -1.9741, -3.5835])
        >>> logit_adjustment([1, 1], tau=2.0).round(4)  # 2 log(1/2)
        array([-1.3863, -1.3863])

    References:
        Menon et al., "Long-tail learning via logit adjustment", ICLR 2021. arXiv:2007.07314

        Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition", NeurIPS 2020.
        arXiv:2007.10740
    """
    where = "logit_adjustment()"
    validation.check_number("tau", tau, validation.NONNEGATIVE, where)
    n = counts_array(counts, where)
    _check_every_class_present(n, "its log-prior log(n_c / n)", where)
    adjustment: NDArray[np.float64] = float(tau) * (np.log(n) - np.log(n.sum()))
    return adjustment


def ldam_margins(counts: ArrayLike, max_margin: float = 0.5) -> NDArray[np.float64]:
    r"""The label-distribution-aware margins :math:`\Delta_c \propto n_c^{-1/4}` of LDAM.

    .. math::
        \Delta_c = \Delta_{\max} \left( \frac{\min_j n_j}{n_c} \right)^{1/4},

    so the rarest class gets ``max_margin`` and the others less, as in the authors' ``LDAMLoss``
    (``m_list = 1 / sqrt(sqrt(cls_num_list))``, scaled to ``max_m``). Pass them as ``margins`` to
    :func:`~focalkit.ldam_loss` or :class:`~focalkit.LDAMLoss`.

    Args:
        counts: Sample counts per class, shape ``(C,)``; each must be positive (a class of count 0
            would need an infinite margin, and the error names it).
        max_margin: :math:`\Delta_{\max} \ge 0`, the margin of the rarest class. Default: 0.5.

    Returns:
        A ``float64`` array of shape ``(C,)`` in ``[0, max_margin]``.

    Example:
        >>> ldam_margins([10000, 625, 16]).round(4)  # (16 / n)^(1/4) / 2
        array([0.1, 0.2, 0.5])

    References:
        Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
        NeurIPS 2019. arXiv:1906.07413
    """
    where = "ldam_margins()"
    validation.check_number("max_margin", max_margin, validation.NONNEGATIVE, where)
    n = counts_array(counts, where)
    _check_every_class_present(n, "its margin n_c^(-1/4)", where)
    margins: NDArray[np.float64] = float(max_margin) * (n.min() / n) ** 0.25
    return margins
