r"""Focal loss for Hugging Face transformers models and their ``Trainer``.

Three ways in, each one line:

- :func:`focal_loss_func`: ``Trainer(..., compute_loss_func=focal_loss_func(model, gamma=2))``,
  for causal language models (labels shifted inside, ``-100`` ignored), token classification
  and sequence classification (single- and multi-label);
- :func:`use_focal_loss`: ``use_focal_loss(model, gamma=2)`` sets the model's
  ``loss_function``, so that ``model(**batch, labels=labels).loss`` is the focal loss, in a
  ``Trainer`` or in any loop; with ``fused=True`` a causal LM in training takes its loss from
  the hidden states and ``lm_head.weight`` (:func:`focalkit.linear_softmax_focal_loss`) and
  never forms its logits; :func:`fused_causal_lm_loss` is the same as a function;
- :class:`FocalTrainer`: a ``Trainer`` that divides by the summed class weights of each step
  (the exact weighted mean) instead of the count of its targets.

Each divides the step's summed loss by the ``Trainer``'s ``num_items_in_batch``, so that
gradient accumulation and several processes train exactly the loss of one call on the whole
global batch, and each gives transformers' own cross-entropy at ``gamma=0, alpha=None``.

``import focalkit`` does not import this module, PyTorch or transformers; it needs ``pip install
"focalkit[transformers]"``.
"""

from __future__ import annotations

try:
    import transformers  # noqa: F401
except ModuleNotFoundError as error:  # pragma: no cover - depends on the environment
    if error.name in ("transformers", "torch", "accelerate"):
        raise ImportError(
            "focalkit.transformers needs transformers, accelerate and PyTorch: "
            'pip install "focalkit[transformers]"'
        ) from error
    raise

from focalkit.transformers.losses import FocalLossFunc, focal_loss_func
from focalkit.transformers.models import ModelFocalLoss, fused_causal_lm_loss, use_focal_loss
from focalkit.transformers.trainer import FocalTrainer

__all__ = [
    "FocalLossFunc",
    "FocalTrainer",
    "ModelFocalLoss",
    "focal_loss_func",
    "fused_causal_lm_loss",
    "use_focal_loss",
]
