"""The decomposition's losses as functions of the parameters, and their Hessian-vector products (docs/maths.md,
"Hessians and condition numbers").

Everything is fixed except the parameters: one evaluation batch (an :class:`~eqdyn.tasks.base.Example` already
drawn, so flow time, prior noise and voxel noise are fixed), its rotations ``[B, K, 3, 3]`` (K >= 16 in real use),
and the model in eval mode. On that batch, with p_k the twisted predictions and p_bar their mean, the scalar losses
are averages over the B examples of the per-example estimators of :func:`eqdyn.decomposition.decompose_predictions`:

- ``"total"``  = mean_x mean_k ||p_k - y||^2
- ``"plugin"`` = mean_x ||p_bar - y||^2
- ``"equiv"``  = mean_x s2, with s2 = sum_k ||p_k - p_bar||^2 / (K - 1) (sampled Haar) or / K (enumerated cube)
- ``"mean"``   = plugin - equiv / K (sampled) or plugin (enumerated)

so total = mean + equiv exactly, and by linearity H_mean = H_plugin - H_equiv / K. The losses are written once
against the Task interface and serve every task and model.

Hessian-vector products, two paths:

- ``"forward_over_reverse"`` (``"auto"`` off the CPU): ``torch.func.jvp`` of ``torch.func.grad``. About 2-3x the
  cost and memory of one gradient. Works through every model of :mod:`eqdyn.models`, including PaiNN, whose
  forces come from ``torch.func.grad`` inside its forward.
- ``"reverse_over_reverse"``: ``torch.autograd.grad`` of the gradient with ``create_graph=True``. Needed by models
  whose forward calls ``torch.autograd.grad`` / ``requires_grad_`` (forces as -dE/dx the classic way): torch.func
  refuses those inside a transform. ``"auto"`` takes this path on the CPU, where it is the cheaper one
  (measured on single vectors, one thread: 0.10 s against 0.15 s per product for the 208k-parameter force-field
  transformer on 4 examples x 16 rotations, 0.20 s against 0.26 s on 8; vmapped blocks of probes may still favour
  forward-over-reverse: ask for it explicitly). On other devices ``"auto"`` tries
  the first path on the first product and falls back to this one if torch raises; :attr:`FixedBatchLosses.hvp_method`
  says which path is in use, and why.

All products run with the math SDPA backend (fused attention kernels have no double backward) and autocast off. No
``F.mse_loss`` anywhere: the squared norms are the task's own, written by hand (``F.mse_loss`` breaks
forward-over-reverse in torch 2.13). Nor is ``torch.func.hessian`` a safe dense reference: in torch 2.13 its
jacfwd(jacrev(f)) is wrong through LayerNorm by several percent (the transformer and egnn), while
jacfwd(grad(f)), both HVP paths and finite differences agree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from eqdyn.decomposition import decompose_predictions, twisted_predictions
from eqdyn.models.common import second_order_paths
from eqdyn.tasks.base import Example, Inputs, Output, Task

LOSS_NAMES = ("total", "mean", "plugin", "equiv")
HvpMethod = Literal["auto", "forward_over_reverse", "reverse_over_reverse"]
HVP_METHODS: tuple[str, ...] = ("auto", "forward_over_reverse", "reverse_over_reverse")


@contextlib.contextmanager
def second_order_mode(device: torch.device) -> Iterator[None]:
    """Math attention (twice differentiable, with forward-mode AD), no autocast, and every model's second-order
    code paths (:func:`eqdyn.models.common.second_order_paths`), on ``device``."""
    with sdpa_kernel(SDPBackend.MATH), torch.autocast(device_type=device.type, enabled=False), second_order_paths():
        yield


def batch_losses(task: Task, predictions: Output, example: Example, enumerated: bool) -> dict[str, Tensor]:
    """The four scalar losses (batch averages of the per-example estimators) from twisted predictions [B, K, ...]."""
    estimates = decompose_predictions(task, predictions, example.target, example.inputs, enumerated, example.example_id)
    return {
        "total": estimates.quantity("total").mean(),
        "mean": estimates.quantity("mean").mean(),
        "plugin": estimates.quantity("mean_plugin").mean(),
        "equiv": estimates.quantity("equiv").mean(),
    }


@dataclass(frozen=True)
class ParameterLayout:
    """Names and shapes of the analysed parameters, and the map between them and one flat vector."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(shape.numel() for shape in self.shapes)

    @property
    def dim(self) -> int:
        return sum(self.numels)

    def flatten(self, tensors: Mapping[str, Tensor]) -> Tensor:
        return torch.cat([tensors[name].reshape(-1) for name in self.names])

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        pieces = torch.split(flat, list(self.numels))
        return {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes, strict=True)}


class _TwistedModel(nn.Module):
    """Holds the model so that one ``functional_call`` swaps its parameters for all B*K rotated copies at once."""

    def __init__(self, task: Task, model: nn.Module, chunk_size: int | None) -> None:
        super().__init__()
        self.task = task
        self.model = model
        self.chunk_size = chunk_size

    def forward(self, inputs: Inputs, rotations: Tensor) -> Output:
        return twisted_predictions(self.task, self.model, inputs, rotations, self.chunk_size)


class FixedBatchLosses:
    """The decomposition's losses on one fixed batch as functions of a flat parameter vector, with gradients and
    Hessian-vector products (see the module docstring).

    ``parameter_names`` restricts the analysis to some parameters (the others stay fixed at their values); by default
    every trainable parameter is analysed. ``enumerated`` defaults to the task's evaluation design (the coset design
    enumerates the 24 cube rotations). ``chunk_size`` runs the K rotated copies through the model in chunks (less
    activation memory, same result).
    """

    def __init__(
        self,
        task: Task,
        model: nn.Module,
        example: Example,
        rotations: Tensor,
        enumerated: bool | None = None,
        *,
        parameter_names: Sequence[str] | None = None,
        chunk_size: int | None = None,
        hvp_method: HvpMethod = "auto",
    ) -> None:
        if model.training:
            raise ValueError("Hessians are taken with the model in eval mode: call model.eval() first")
        if rotations.dim() != 4 or rotations.shape[-2:] != (3, 3):
            raise ValueError(f"expected rotations [B, K, 3, 3], got {tuple(rotations.shape)}")
        if hvp_method not in HVP_METHODS:
            raise ValueError(f"unknown HVP method {hvp_method!r}; known: {', '.join(HVP_METHODS)}")
        self.task = task
        self.model = model
        self.example = example
        self.rotations = rotations
        self.enumerated = task.evaluation_design == "octahedral_coset" if enumerated is None else enumerated
        self.num_rotations = int(rotations.shape[1])
        if not self.enumerated and self.num_rotations < 2:
            raise ValueError("sampled rotations need K >= 2")
        trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
        names = tuple(trainable) if parameter_names is None else tuple(parameter_names)
        unknown = [name for name in names if name not in trainable]
        if unknown or not names:
            raise ValueError(f"no such trainable parameters: {unknown}" if unknown else "no parameters to analyse")
        self.layout = ParameterLayout(names, tuple(trainable[name].shape for name in names))
        self.parameters = self.layout.flatten({name: trainable[name].detach() for name in names})
        # parameters outside the analysis enter as constants, so no graph is built for them
        self._fixed = {f"model.{name}": p.detach() for name, p in trainable.items() if name not in names}
        self._twisted = _TwistedModel(task, model, chunk_size)
        # "auto" on the CPU: reverse-over-reverse, the cheaper path there (module docstring)
        self.hvp_method: HvpMethod = (
            "reverse_over_reverse" if hvp_method == "auto" and self.device.type == "cpu" else hvp_method
        )
        self.fallback_reason: str | None = None

    @property
    def dim(self) -> int:
        return self.layout.dim

    @property
    def device(self) -> torch.device:
        return self.parameters.device

    @property
    def dtype(self) -> torch.dtype:
        return self.parameters.dtype

    @property
    def equiv_weight_in_mean(self) -> float:
        """c in L_mean = L_plugin - c L_equiv: 1/K for sampled rotations, 0 when the group is enumerated."""
        return 0.0 if self.enumerated else 1.0 / self.num_rotations

    def predictions(self, flat: Tensor | None = None) -> Output:
        """Twisted predictions [B, K, ...] at the flat parameters ``flat`` (default: the model's own)."""
        flat = self.parameters if flat is None else flat
        params = {f"model.{name}": value for name, value in self.layout.unflatten(flat).items()}
        with second_order_mode(self.device):
            return functional_call(self._twisted, {**self._fixed, **params}, (self.example.inputs, self.rotations))

    def losses(self, flat: Tensor | None = None) -> dict[str, Tensor]:
        """All four scalar losses from one pass over the B*K copies."""
        return batch_losses(self.task, self.predictions(flat), self.example, self.enumerated)

    def loss_function(self, loss: str) -> Callable[[Tensor], Tensor]:
        """The scalar function flat parameters -> loss (one of :data:`LOSS_NAMES`)."""
        if loss not in LOSS_NAMES:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSS_NAMES)}")
        return lambda flat: self.losses(flat)[loss]

    def value(self, loss: str) -> float:
        # not under no_grad: a forward that calls torch.autograd.grad (forces as -dE/dx) needs its graph
        return float(self.loss_function(loss)(self.parameters).detach())

    def gradient(self, loss: str, flat: Tensor | None = None) -> Tensor:
        """The flat gradient of ``loss`` at ``flat`` (default: the model's parameters), by the path the HVPs use."""
        function = self.loss_function(loss)
        point = self.parameters if flat is None else flat
        if self.hvp_method == "reverse_over_reverse":
            with torch.enable_grad():
                point = point.detach().requires_grad_(True)
                return torch.autograd.grad(function(point), point)[0]
        try:
            return grad(function)(point)
        except RuntimeError as error:
            if self.hvp_method != "auto" or isinstance(error, torch.OutOfMemoryError):
                raise
            self._fall_back(error)
            return self.gradient(loss, flat)

    def hvp(self, loss: str, vector: Tensor) -> Tensor:
        """H v for the Hessian of ``loss`` with respect to the analysed parameters: ``vector`` is flat [dim], or a
        block [b, dim] of vectors (forward-over-reverse vmaps over them: one pass of b-times-larger operations, b
        times the memory; reverse-over-reverse reuses one gradient graph for the b products)."""
        if vector.shape[-1:] != self.parameters.shape or vector.dim() > 2:
            raise ValueError(f"expected [{self.dim}] or [b, {self.dim}], got {tuple(vector.shape)}")
        vector = vector.to(dtype=self.dtype, device=self.device)
        function = self.loss_function(loss)
        if self.hvp_method == "reverse_over_reverse":
            return hvp_reverse_over_reverse(function, self.parameters, vector)
        try:
            result = hvp_forward_over_reverse(function, self.parameters, vector)
        except RuntimeError as error:
            if self.hvp_method != "auto" or isinstance(error, torch.OutOfMemoryError):
                raise
            self._fall_back(error)
            return self.hvp(loss, vector)
        self.hvp_method = "forward_over_reverse"  # auto resolves on the first success
        return result

    def hvp_mean_by_linearity(self, vector: Tensor) -> dict[str, Tensor]:
        """H_plugin v, H_equiv v and H_mean v = H_plugin v - c H_equiv v (two HVPs; c = 1/K or 0)."""
        plugin, equiv = self.hvp("plugin", vector), self.hvp("equiv", vector)
        return {"plugin": plugin, "equiv": equiv, "mean": plugin - self.equiv_weight_in_mean * equiv}

    def operator(self, loss: str) -> HessianOperator:
        return HessianOperator(self, loss)

    def _fall_back(self, error: RuntimeError) -> None:
        self.hvp_method = "reverse_over_reverse"
        self.fallback_reason = f"{type(error).__name__}: {str(error).splitlines()[0]}"


class HessianOperator:
    """The matrix-free symmetric operator v -> H v of one loss, for the spectral tools; ``num_hvps`` counts the
    products (a block [b, dim] counts b)."""

    def __init__(self, losses: FixedBatchLosses, loss: str) -> None:
        if loss not in LOSS_NAMES:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSS_NAMES)}")
        self.losses = losses
        self.loss = loss
        self.num_hvps = 0

    @property
    def dim(self) -> int:
        return self.losses.dim

    def __call__(self, vector: Tensor) -> Tensor:
        self.num_hvps += 1 if vector.dim() == 1 else vector.shape[0]
        return self.losses.hvp(self.loss, vector).detach()


def hvp_forward_over_reverse(function: Callable[[Tensor], Tensor], point: Tensor, vector: Tensor) -> Tensor:
    """H v = d/de grad f(x + e v) at e = 0: a forward-mode derivative of the reverse-mode gradient; rows of a block
    [b, dim] of vectors are vmapped."""

    def product(tangent: Tensor) -> Tensor:
        return jvp(grad(function), (point,), (tangent,))[1]

    return product(vector) if vector.dim() == 1 else vmap(product)(vector)


def hvp_reverse_over_reverse(function: Callable[[Tensor], Tensor], point: Tensor, vector: Tensor) -> Tensor:
    """H v = grad_x (grad f(x) . v), differentiating the gradient's graph (create_graph=True) a second time, once
    per row of a block [b, dim]."""
    with torch.enable_grad():
        x = point.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(function(x), x, create_graph=True)
        rows = vector.reshape(-1, vector.shape[-1])
        products = [
            torch.autograd.grad(gradient, x, grad_outputs=row, retain_graph=index < len(rows) - 1)[0]
            for index, row in enumerate(rows)
        ]
    return torch.stack(products).reshape(vector.shape)
