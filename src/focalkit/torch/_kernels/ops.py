r"""The kernels as custom operators, so that ``torch.compile`` keeps them whole.

Traced by ``torch.compile``, an ``autograd.Function`` whose forward loops over row chunks is
taken apart into its operations (or the trace stops there); and the definitions it would trace
instead build every temporary of the input's size, and for the fused loss the ``(N, C)`` logits.
Registered with ``torch.library.custom_op``, each kernel is one node of the compiled graph: a
fake implementation gives the shapes of its results, and the compiled program calls the same
chunked code that runs in eager mode.

- ``focalkit::softmax_focal`` returns the loss, the unit gradient (the input's shape) and the
  factor still to multiply it by (one number, or one per element ``(N, 1, d...)``).
- ``focalkit::linear_softmax_focal`` returns the loss and the gradients of the input, the
  classifier and the bias (for ``'mean'`` and ``'sum'``; for ``'none'`` it returns them only when
  given the incoming gradient, which backward does).

The sigmoid loss needs no operator: it is element-wise, and under ``torch.compile`` it takes
``SigmoidFocalElementwise``, whose forward and backward the compiler fuses into one kernel each
(faster than the chunked eager kernel, and no larger).

Their registered backward only scales what forward computed, in place where the tensors are its
own (the compiler's functional graph then reuses their memory). The operators take only tensors
and numbers, so each settings tuple of :mod:`focalkit.torch._settings` is passed field by field:
:func:`flatten` and :func:`unflatten` are the adapter, and :func:`schema` writes each operator's
schema from the tuple's own annotations, so a field added to a tuple reaches its operator.

Double backward through a compiled loss is not supported (nor is it by ``torch.compile`` itself);
in eager mode the kernels' ``autograd.Function``\ s recompute the definitions for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor

from focalkit.torch._kernels._common import no_autocast
from focalkit.torch._kernels.fused import _fused_pass
from focalkit.torch._kernels.softmax import _softmax_forward, per_element_factor
from focalkit.torch._reduction import reduce
from focalkit.torch._settings import FusedSettings, SoftmaxKernelSettings

Settings = TypeVar("Settings", SoftmaxKernelSettings, FusedSettings)

# A settings field's annotation -> its schema type. A number-or-tensor field becomes two
# arguments: the number (None where it is a tensor) and the tensor (None where it is a number).
_SCHEMA_TYPES = {
    "Tensor": "Tensor",
    "Tensor | None": "Tensor?",
    "float": "float",
    "int": "SymInt",
    "bool": "bool",
    "str": "str",
    "torch.dtype": "ScalarType",
}
_NUMBER_OR_TENSOR = ("float | Tensor", "float | Tensor | None")


def _annotations(settings_type: type[NamedTuple]) -> list[tuple[str, str]]:
    """Each field's name and annotation, as written in its class."""
    annotations = settings_type.__annotations__
    return [
        (name, str(getattr(annotations[name], "__forward_arg__", annotations[name])))
        for name in settings_type._fields
    ]


def schema(settings_type: type[NamedTuple], leading: str, returns: str) -> str:
    """An operator schema: ``leading`` arguments, then each field of ``settings_type``."""
    arguments = [leading]
    for name, annotation in _annotations(settings_type):
        if annotation in _NUMBER_OR_TENSOR:
            arguments += [f"float? {name}", f"Tensor? {name}_tensor"]
        elif annotation in _SCHEMA_TYPES:
            arguments.append(f"{_SCHEMA_TYPES[annotation]} {name}")
        else:
            raise TypeError(f"{settings_type.__name__}.{name}: no schema type for {annotation}")
    return f"({', '.join(arguments)}) -> {returns}"


def flatten(settings: NamedTuple) -> list[Any]:
    """The settings as operator arguments, in :func:`schema`'s order."""
    values: list[Any] = []
    for (_, annotation), value in zip(_annotations(type(settings)), settings, strict=True):
        if annotation in _NUMBER_OR_TENSOR:
            is_tensor = isinstance(value, Tensor)
            values += [None if is_tensor else value, value if is_tensor else None]
        else:
            values.append(value)
    return values


def unflatten(settings_type: type[Settings], values: Sequence[Any]) -> Settings:
    """The settings tuple back from :func:`flatten`'s arguments."""
    fields = []
    position = 0
    for _, annotation in _annotations(settings_type):
        if annotation in _NUMBER_OR_TENSOR:
            number, tensor = values[position : position + 2]
            fields.append(number if tensor is None else tensor)
            position += 2
        else:
            fields.append(values[position])
            position += 1
    return settings_type(*fields)


def _num_arguments(settings_type: type[NamedTuple]) -> int:
    return sum(2 if a in _NUMBER_OR_TENSOR else 1 for _, a in _annotations(settings_type))


def _no_double_backward() -> None:
    if torch.is_grad_enabled():
        raise RuntimeError(
            "focalkit: double backward through a loss compiled with torch.compile is not "
            "supported; call the loss outside torch.compile for create_graph=True"
        )


def _empty(like: Tensor) -> Tensor:
    return like.new_empty((0,))


# ------------------------------------------------------------------------------ softmax


def _factor_shape(input: Tensor, settings: SoftmaxKernelSettings) -> tuple[int, ...]:
    """One factor per element ``(N, 1, d...)``, or one number: a scalar keeps backward's
    scaling a plain multiplication."""
    if per_element_factor(settings):
        return (input.shape[0], 1, *input.shape[2:])
    return ()


def _softmax_impl(input: Tensor, *flat: Any) -> tuple[Tensor, Tensor, Tensor]:
    settings = unflatten(SoftmaxKernelSettings, flat)
    with no_autocast(input):
        out, unit_grad, factor = _softmax_forward(input, settings, needs_grad=settings.needs_grad)
    if unit_grad is None:
        return out, _empty(input), _empty(out)
    shape = _factor_shape(input, settings)
    factor_tensor = torch.ones(shape, dtype=settings.compute_dtype, device=input.device)
    if factor is not None:
        factor_tensor.mul_(factor)
    return out, unit_grad, factor_tensor


softmax_focal_op = torch.library.custom_op(
    "focalkit::softmax_focal",
    _softmax_impl,
    mutates_args=(),
    schema=schema(SoftmaxKernelSettings, "Tensor input", "(Tensor, Tensor, Tensor)"),
)


@softmax_focal_op.register_fake
def _(input: Tensor, *flat: Any) -> tuple[Tensor, Tensor, Tensor]:
    settings = unflatten(SoftmaxKernelSettings, flat)
    dtype = settings.compute_dtype
    loss_shape = (input.shape[0], *input.shape[2:]) if settings.reduction == "none" else ()
    out = input.new_empty(loss_shape, dtype=dtype)
    if not settings.needs_grad:
        return out, _empty(input), _empty(out)
    factor = input.new_empty(_factor_shape(input, settings), dtype=dtype)
    return out, torch.empty_like(input), factor


def _softmax_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    _, unit_grad, factor = output
    # Kept as attributes, detached: backward consumes the buffer (it scales it in place), and a
    # tensor saved for backward could not be modified there. A second backward runs forward again.
    ctx.unit_grad, ctx.factor, ctx.inputs = unit_grad.detach(), factor.detach(), inputs


def _softmax_backward(ctx: Any, grad_out: Tensor, *unused: Any) -> tuple[Tensor | None, ...]:
    _no_double_backward()
    unit_grad, factor = ctx.unit_grad, ctx.factor
    ctx.unit_grad = ctx.factor = None
    if unit_grad is None:  # a second backward through a retained graph
        _, unit_grad, factor = softmax_focal_op(*ctx.inputs)
    if grad_out.dim():
        grad_out = grad_out.unsqueeze(1)
    grad = unit_grad.mul_(grad_out * factor)
    return (grad,) + (None,) * _num_arguments(SoftmaxKernelSettings)


softmax_focal_op.register_autograd(_softmax_backward, setup_context=_softmax_setup)


def softmax_focal(input: Tensor, settings: SoftmaxKernelSettings) -> Tensor:
    """The softmax focal loss kernel as one operator (see ``SoftmaxFocal``)."""
    out: Tensor = softmax_focal_op(input, *flatten(settings))[0]
    return out


# ------------------------------------------------------------------------------ fused linear

_FUSED_LEADING = (
    "Tensor input, Tensor classifier, Tensor? bias, Tensor? grad_out, bool want_input, "
    "bool want_classifier, bool want_bias"
)


def _fused_arguments(
    grad_out: Tensor | None, rest: Sequence[Any]
) -> tuple[FusedSettings, tuple[bool, bool, bool]]:
    """The settings, and which gradients this call computes: for ``'none'``, only backward's
    call (given ``grad_out``) computes them."""
    settings = unflatten(FusedSettings, rest[3:])
    if settings.reduction == "none" and grad_out is None:
        return settings, (False, False, False)
    want_input, want_classifier, want_bias = rest[:3]
    return settings, (want_input, want_classifier, want_bias)


def _fused_impl(
    input: Tensor, classifier: Tensor, bias: Tensor | None, grad_out: Tensor | None, *rest: Any
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    settings, wants = _fused_arguments(grad_out, rest)
    loss_rows, grads = _fused_pass(input, classifier, bias, settings, grad_out, wants)
    if grad_out is None:
        loss_rows = reduce(loss_rows, settings.reduction, settings.divisor)
    grad_input, grad_classifier, grad_bias = (
        _empty(input) if grad is None else grad for grad in grads
    )
    return loss_rows, grad_input, grad_classifier, grad_bias


linear_softmax_focal_op = torch.library.custom_op(
    "focalkit::linear_softmax_focal",
    _fused_impl,
    mutates_args=(),
    schema=schema(FusedSettings, _FUSED_LEADING, "(Tensor, Tensor, Tensor, Tensor)"),
)


@linear_softmax_focal_op.register_fake
def _(
    input: Tensor, classifier: Tensor, bias: Tensor | None, grad_out: Tensor | None, *rest: Any
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    settings, (want_input, want_classifier, want_bias) = _fused_arguments(grad_out, rest)
    compute = torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype
    reduced = grad_out is None and settings.reduction != "none"
    out = input.new_empty(() if reduced else (input.shape[0],), dtype=compute)
    grad_input = torch.empty_like(input) if want_input else _empty(input)
    grad_classifier = (
        classifier.new_empty(classifier.shape, dtype=compute) if want_classifier else _empty(input)
    )
    grad_bias = _empty(input)
    if want_bias and bias is not None:
        grad_bias = bias.new_empty(bias.shape, dtype=compute)
    return out, grad_input, grad_classifier, grad_bias


def _fused_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    ctx.inputs = inputs
    ctx.wants = inputs[4:7]
    ctx.grads = tuple(grad.detach() for grad in output[1:])


def _fused_backward(ctx: Any, grad_out: Tensor, *unused: Any) -> tuple[Tensor | None, ...]:
    _no_double_backward()
    input, classifier, bias, _, *rest = ctx.inputs
    settings = unflatten(FusedSettings, rest[3:])
    grads, ctx.grads = ctx.grads, None
    if settings.reduction == "none":
        grads = linear_softmax_focal_op(input, classifier, bias, grad_out, *rest)[1:]
    else:
        if grads is None:  # a second backward through a retained graph
            grads = linear_softmax_focal_op(input, classifier, bias, None, *rest)[1:]
        grads = tuple(grad.mul_(grad_out) for grad in grads)
    targets = (input, classifier, bias)
    results = tuple(
        grad.to(target.dtype) if want and target is not None else None
        for grad, want, target in zip(grads, ctx.wants, targets, strict=True)
    )
    return results + (None,) * (4 + _num_arguments(FusedSettings))


linear_softmax_focal_op.register_autograd(_fused_backward, setup_context=_fused_setup)


def linear_softmax_focal(
    input: Tensor, classifier: Tensor, bias: Tensor | None, settings: FusedSettings
) -> Tensor:
    """The fused linear softmax focal loss as one operator (see ``LinearSoftmaxFocal``)."""
    needs_grad = settings.needs_grad and torch.is_grad_enabled()
    wants = (
        needs_grad and input.requires_grad,
        needs_grad and classifier.requires_grad,
        needs_grad and bias is not None and bias.requires_grad,
    )
    out: Tensor = linear_softmax_focal_op(
        input, classifier, bias, None, *wants, *flatten(settings)
    )[0]
    return out
