"""The held-out loss of a model split into a twirled-prediction error and an equivariance error.

See docs/maths.md, "The math".

For an example (x, y) and rotations g_1..g_K, the twisted predictions
p_k = f_{g_k}(x) = rho_out(g_k)^-1 f(rho_in(g_k) x)
are all read in the example's own frame. With p_bar = mean_k p_k and ||.|| the task's weighted loss norm:

- sampled Haar rotations (i.i.d., K >= 2), unbiased for every example:
    s2 = sum_k ||p_k - p_bar||^2 / (K - 1)          L_equiv_hat = s2
    L_mean_hat = ||p_bar - y||^2 - s2 / K            (the plug-in ||p_bar - y||^2 is biased up by L_equiv / K)
    L_total_hat = mean_k ||p_k - y||^2 = L_mean_hat + L_equiv_hat exactly;
- the K = 24 cube rotations enumerated: p_bar is the exact octahedral twirl, L_equiv = sum_k ||p_k - p_bar||^2 / K
  and L_mean = ||p_bar - y||^2, with no correction.

One example's L_mean_hat can be negative; it is never clipped. The percentage is the ratio of averages,
100 * mean(L_equiv_hat) / mean(L_total_hat), with a delta-method standard error over examples.

Test-time twirling with k rotations averages k twisted predictions. Its expected loss is L_mean + L_equiv / k for
i.i.d. Haar rotations, and L_mean + L_equiv (24 - k) / (23 k) for k of the 24 cube rotations drawn without
replacement (the variance of a mean drawn without replacement from a finite population). That holds for every
model, so it checks code, not models; measured on the estimator's own rotations it is an identity of the
estimators, so the twirling rotations are a separate keyed stream (Haar design) or a separate keyed order of the
cube rotations (coset design).

The public API, the same the workflow runs (:mod:`eqdyn.analysis.checkpoint_decomposition`, and the user CLI
``python -m eqdyn.decompose``): :func:`make_evaluation_rotations` (keyed rotations for the task's design),
:func:`evaluation_batches` (examples with their rotations and twirling sets), :func:`decompose` (one batch, under
``torch.no_grad()``, on the model's device; the design is ``task.evaluation_design``), :func:`decompose_batches`
(all batches), and :class:`Decomposition` with :meth:`~Decomposition.summary` (a DataFrame) and
:meth:`~Decomposition.examples` (per-example losses).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from eqdyn.molecules import MoleculeBatch, MoleculeDataset
from eqdyn.symmetry.rotations import (
    coset_frames,
    evaluation_rotations,
    haar_rotations_numpy,
    keyed_rng,
    octahedral_group,
)
from eqdyn.tasks.base import Example, Inputs, KeyedNoise, Output, Task, sum_parts

QUANTITIES = ("total", "mean", "mean_plugin", "equiv", "twirl_sq_norm")
# keyed_rng streams 1-3 are the evaluation rotations, the coset frames and the example noise
STREAM_TWIRLING_ROTATIONS = 4
OCTAHEDRAL_ORDER = 24
# Decomposition.summary(): one row per (part, t bin, quantity, k)
SUMMARY_COLUMNS = ("part", "t_bin", "quantity", "k", "value", "stderr", "n")
# bins of the flow time t for per-t rows (examples with a covariate "t")
T_BIN_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass
class Decomposition:
    """Per-example estimates [B] for each output part; ``part="all"`` sums the parts. ``twirled`` holds, where a
    twirling set was given, the loss [B] of the test-time twirled model per number of rotations k."""

    example_id: Tensor
    num_rotations: int
    enumerated: bool
    total: dict[str, Tensor]
    mean: dict[str, Tensor]
    mean_plugin: dict[str, Tensor]
    equiv: dict[str, Tensor]
    twirl_sq_norm: dict[str, Tensor]  # unbiased ||f_bar(x)||^2, the denominator of the relative equivariance error
    covariates: dict[str, Tensor] = field(default_factory=dict)
    twirled: dict[int, Tensor] = field(default_factory=dict)

    def quantity(self, name: str, part: str = "all") -> Tensor:
        values: dict[str, Tensor] = getattr(self, name)
        return sum_parts(values) if part == "all" else values[part]

    @property
    def parts(self) -> list[str]:
        return [*self.total, "all"] if len(self.total) > 1 else list(self.total)

    @classmethod
    def concatenate(cls, parts: Sequence[Decomposition]) -> Decomposition:
        """One decomposition of the examples of several (batches') decompositions, in their order."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]

        def cat(name: str) -> dict[str, Tensor]:
            return {part: torch.cat([getattr(d, name)[part] for d in parts]) for part in getattr(first, name)}

        return cls(
            torch.cat([d.example_id for d in parts]),
            first.num_rotations,
            first.enumerated,
            cat("total"),
            cat("mean"),
            cat("mean_plugin"),
            cat("equiv"),
            cat("twirl_sq_norm"),
            covariates={key: torch.cat([d.covariates[key] for d in parts]) for key in first.covariates},
            twirled={k: torch.cat([d.twirled[k] for d in parts]) for k in first.twirled},
        )

    def summary_rows(self) -> list[dict[str, Any]]:
        """Tidy rows (part, t_bin, quantity, k, value, stderr, n): :func:`summarize` over all examples (t_bin
        "all"), per bin of the flow time t where the examples have one (:data:`T_BIN_EDGES`), and for each k of
        ``twirled`` the twirled loss, its expectation from the estimators and their paired difference (k is ""
        on the other rows)."""
        rows: list[dict[str, Any]] = [{"t_bin": "all", "k": "", **row} for row in summarize(self)]
        if "t" in self.covariates:
            t = self.covariates["t"].double()
            for low, high in itertools.pairwise(T_BIN_EDGES):
                in_bin = (t >= low) & (t < high)
                rows += [{"t_bin": f"[{low:.1f},{high:.1f})", "k": "", **row} for row in summarize(self, in_bin)]
        mean = self.quantity("mean").double().numpy()
        equiv = self.quantity("equiv").double().numpy()
        n = len(mean)
        for k, twirled in self.twirled.items():
            losses = twirled.double().numpy()
            predicted = twirling_expectation(mean, equiv, k, self.enumerated)
            # the difference is paired per example: its standard error is far smaller than the two in quadrature
            pairs = (
                ("twirled_loss", losses),
                ("twirled_loss_predicted", predicted),
                ("twirled_loss_minus_predicted", losses - predicted),
            )
            for quantity, values in pairs:
                stderr = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
                rows.append(
                    {
                        "part": "all",
                        "t_bin": "all",
                        "quantity": quantity,
                        "k": k,
                        "value": float(values.mean()),
                        "stderr": stderr,
                        "n": n,
                    }
                )
        return [{column: row[column] for column in SUMMARY_COLUMNS} for row in rows]

    def summary(self) -> pd.DataFrame:
        """:meth:`summary_rows` as a DataFrame with columns :data:`SUMMARY_COLUMNS` (k: nullable integer)."""
        table = pd.DataFrame(self.summary_rows(), columns=list(SUMMARY_COLUMNS))
        table["k"] = pd.array([None if k == "" else k for k in table["k"]], dtype="Int64")
        return table

    def examples(self) -> pd.DataFrame:
        """One row per example: its id, its L_total estimate and its twirled loss per k (all parts summed)."""
        columns: dict[str, Any] = {
            "example_id": self.example_id.cpu().numpy().astype(np.int64),
            "total": self.quantity("total").double().numpy(),
        }
        columns.update({f"twirled_{k}": losses.double().numpy() for k, losses in sorted(self.twirled.items())})
        return pd.DataFrame(columns)


@dataclass(frozen=True)
class EvaluationRotations:
    """The rotations an evaluation uses for a set of examples (docs/maths.md: keyed by seed, example id and k)."""

    example_id: np.ndarray  # [B]
    rotations: np.ndarray  # [B, K, 3, 3]
    enumerated: bool  # True: the 24 cube rotations inside each example's frame
    frames: np.ndarray | None = None  # [B, 3, 3] Haar frame h of the coset estimator, else None
    # test-time twirling, independent of ``rotations``: M Haar rotations [B, M, 3, 3] (Haar design) or a random
    # order [B, 24] of the cube rotations (coset design), keyed by (seed, example id) in their own stream
    twirl_rotations: np.ndarray | None = None
    twirl_order: np.ndarray | None = None


def make_evaluation_rotations(
    task: Task, example_ids: np.ndarray, seed: int, num_rotations: int, num_twirl_rotations: int = 0
) -> EvaluationRotations:
    """Per-example rotations for ``task``'s evaluation design; ``num_rotations`` is ignored for the coset design.

    With ``num_twirl_rotations`` M > 0 also the test-time twirling set: M Haar rotations per example (Haar design) or
    a random order of the 24 cube rotations (coset design; M is then ignored). The estimator's rotations do not
    depend on M."""
    example_ids = np.asarray(example_ids, dtype=np.int64)
    if task.evaluation_design == "haar":
        if num_rotations < 2:
            raise ValueError(f"the Haar design needs K >= 2 rotations per example, got {num_rotations}")
        twirl = twirling_rotations(seed, example_ids, num_twirl_rotations) if num_twirl_rotations > 0 else None
        return EvaluationRotations(
            example_ids, evaluation_rotations(seed, example_ids, num_rotations), False, twirl_rotations=twirl
        )
    group = octahedral_group().numpy()
    rotations = np.broadcast_to(group, (len(example_ids), *group.shape)).copy()
    order = twirling_orders(seed, example_ids) if num_twirl_rotations > 0 else None
    return EvaluationRotations(example_ids, rotations, True, coset_frames(seed, example_ids), twirl_order=order)


def twirling_rotations(seed: int, example_ids: np.ndarray, num_rotations: int) -> np.ndarray:
    """M Haar rotations per example keyed by (seed, example id, j) in the twirling stream: [B, M, 3, 3]."""
    out = np.empty((len(example_ids), num_rotations, 3, 3))
    for row, example_id in enumerate(np.asarray(example_ids, dtype=np.int64)):
        out[row] = haar_rotations_numpy(num_rotations, keyed_rng(seed, int(example_id), STREAM_TWIRLING_ROTATIONS))
    return out


def twirling_orders(seed: int, example_ids: np.ndarray) -> np.ndarray:
    """A uniformly random order of the 24 cube rotations per example, keyed by (seed, example id): [B, 24].
    Consecutive groups of k are k rotations drawn without replacement."""
    return np.stack(
        [
            keyed_rng(seed, int(example_id), STREAM_TWIRLING_ROTATIONS).permutation(OCTAHEDRAL_ORDER)
            for example_id in np.asarray(example_ids, dtype=np.int64)
        ]
    ).astype(np.int64)


def make_evaluation_example(
    task: Task, molecules: MoleculeBatch, evaluation: EvaluationRotations, noise_seed: int
) -> tuple[Example, Tensor]:
    """The example (keyed noise, coset frame applied) and its rotations [B, K, 3, 3], rows matched by example id."""
    position = {int(key): row for row, key in enumerate(evaluation.example_id)}
    try:
        rows = np.array([position[int(key)] for key in molecules.example_id])
    except KeyError as error:
        raise KeyError(f"example id {error.args[0]} has no evaluation rotations") from None
    if evaluation.frames is not None:
        molecules = molecules.rotate(torch.from_numpy(evaluation.frames[rows]).to(molecules.positions.dtype))
    example = task.make_example(molecules, KeyedNoise(noise_seed))
    return example, torch.from_numpy(evaluation.rotations[rows])


def twisted_predictions(
    task: Task, model: nn.Module, inputs: Inputs, rotations: Tensor, chunk_size: int | None = None
) -> Output:
    """p_k = f_{g_k}(x) for ``rotations [B, K, 3, 3]``: the K rotated copies of the batch go through the model
    together (in chunks of ``chunk_size`` rotations), and come back as outputs [B, K, ...] in the input frame."""
    batch, num_rotations = rotations.shape[:2]
    chunk_size = chunk_size or num_rotations
    chunks: list[Output] = []
    for start in range(0, num_rotations, chunk_size):
        block = rotations[:, start : start + chunk_size]
        k = block.shape[1]
        repeated = {name: value.repeat_interleave(k, dim=0) for name, value in inputs.items()}
        flat = block.reshape(batch * k, 3, 3)
        twisted = task.twist(model, repeated, flat)
        chunks.append({part: value.reshape(batch, k, *value.shape[1:]) for part, value in twisted.items()})
    return {part: torch.cat([chunk[part] for chunk in chunks], dim=1) for part in chunks[0]}


def decompose_predictions(
    task: Task, predictions: Output, target: Output, inputs: Inputs, enumerated: bool, example_id: Tensor
) -> Decomposition:
    """The estimators from twisted predictions [B, K, ...] and the target [B, ...] (see the module docstring)."""
    num_rotations = next(iter(predictions.values())).shape[1]
    if not enumerated and num_rotations < 2:
        raise ValueError("sampled rotations need K >= 2 for an unbiased variance")
    p_bar = {part: predictions[part].mean(dim=1) for part in task.output_parts}
    deviation = {part: predictions[part] - p_bar[part].unsqueeze(1) for part in task.output_parts}
    residual_k = {part: predictions[part] - target[part].unsqueeze(1) for part in task.output_parts}
    sum_sq_dev = {part: value.sum(dim=1) for part, value in task.squared_norms(deviation, inputs).items()}
    total = {part: value.mean(dim=1) for part, value in task.squared_norms(residual_k, inputs).items()}
    plugin = task.squared_norms({part: p_bar[part] - target[part] for part in task.output_parts}, inputs)
    twirl_norm = task.squared_norms(p_bar, inputs)
    if enumerated:
        equiv = {part: value / num_rotations for part, value in sum_sq_dev.items()}
        mean = dict(plugin)
        twirl_sq_norm = dict(twirl_norm)
    else:
        equiv = {part: value / (num_rotations - 1) for part, value in sum_sq_dev.items()}
        mean = {part: plugin[part] - equiv[part] / num_rotations for part in plugin}
        twirl_sq_norm = {part: twirl_norm[part] - equiv[part] / num_rotations for part in twirl_norm}
    return Decomposition(example_id, num_rotations, enumerated, total, mean, plugin, equiv, twirl_sq_norm)


def enumerates_rotations(task: Task) -> bool:
    """True when ``task``'s evaluation design enumerates the 24 cube rotations (coset design), False for i.i.d.
    Haar rotations."""
    return task.evaluation_design == "octahedral_coset"


def model_device(model: nn.Module, default: torch.device | str = "cpu") -> torch.device:
    """The device of the model's first parameter or buffer; ``default`` for a model without either."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device(default)


def decompose(
    task: Task,
    model: nn.Module,
    example: Example,
    rotations: Tensor,
    enumerated: bool | None = None,
    chunk_size: int | None = None,
    *,
    twirling: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Decomposition:
    """The loss decomposition of ``model`` on one batch ``example`` with per-example ``rotations [B, K, 3, 3]``
    (from :func:`make_evaluation_example`), in the task's evaluation design (``task.evaluation_design``).

    The model runs under ``torch.no_grad()`` on ``device`` (moved there when given; else where its parameters are),
    in chunks of ``chunk_size`` rotations; the estimators run on CPU copies of its predictions. With ``twirling``
    (:attr:`EvaluationRotations.twirl_rotations` [B, M, 3, 3] for the Haar design, which go through the model
    separately, or :attr:`EvaluationRotations.twirl_order` [B, 24] for the coset design, an order of the 24
    predictions already made) also the test-time twirled losses for k = 1, 2, 4, ... (:func:`twirling_ks`).

    ``enumerated`` is deprecated: the task determines it; a value that contradicts the task is an error."""
    design_enumerates = enumerates_rotations(task)
    if enumerated is not None:
        if bool(enumerated) != design_enumerates:
            raise ValueError(
                f"enumerated={enumerated} contradicts {task.name}'s evaluation design {task.evaluation_design!r}"
            )
        warnings.warn(
            "decompose(..., enumerated=...) is deprecated: the task's evaluation_design determines it",
            DeprecationWarning,
            stacklevel=2,
        )
    if rotations.dim() != 4 or rotations.shape[-2:] != (3, 3):
        raise ValueError(f"expected rotations [B, K, 3, 3], got {tuple(rotations.shape)}")
    if design_enumerates and rotations.shape[1] != OCTAHEDRAL_ORDER:
        raise ValueError(
            f"the coset design enumerates the {OCTAHEDRAL_ORDER} cube rotations; got K = {rotations.shape[1]}"
        )
    if device is not None:
        model.to(device)
    run_on = model_device(model, default=rotations.device)
    cpu = torch.device("cpu")
    on_cpu = example.to(cpu)

    def predict(with_rotations: Tensor) -> Output:
        with torch.no_grad():
            inputs = example.to(run_on).inputs
            predictions = twisted_predictions(task, model, inputs, with_rotations.to(run_on), chunk_size)
        return {part: value.detach().to(cpu) for part, value in predictions.items()}

    predictions = predict(rotations)
    result = decompose_predictions(
        task, predictions, on_cpu.target, on_cpu.inputs, design_enumerates, on_cpu.example_id
    )
    result.covariates = dict(on_cpu.covariates)
    if twirling is None:
        return result
    if design_enumerates:
        twirl_predictions, order = predictions, twirling.to(cpu)
    else:
        twirl_predictions, order = predict(twirling), None
    for k in twirling_ks(next(iter(twirl_predictions.values())).shape[1]):
        result.twirled[k] = twirled_losses(task, twirl_predictions, on_cpu.target, on_cpu.inputs, k, order).detach()
    return result


class EvaluationBatch(NamedTuple):
    """One batch of the evaluation: the example, its rotations [B, K, 3, 3] and its twirling set (or None)."""

    example: Example
    rotations: Tensor
    twirling: Tensor | None = None


def evaluation_batches(
    task: Task,
    dataset: MoleculeDataset,
    evaluation: EvaluationRotations,
    seed: int,
    batch_size: int | None = None,
    evaluations_per_batch: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[EvaluationBatch]:
    """The examples of ``evaluation`` (matched by id into ``dataset``), in its order, in batches of ``batch_size``
    examples or of as many as keep the model evaluations per batch (examples x rotations) within
    ``evaluations_per_batch``. Batching changes no number: every example's noise and rotations are keyed by its id.
    ``seed`` keys the example noise (the seed that made the rotations)."""
    if (batch_size is None) == (evaluations_per_batch is None):
        raise ValueError("give exactly one of batch_size and evaluations_per_batch")
    if evaluation.enumerated != enumerates_rotations(task):
        raise ValueError(
            f"the evaluation rotations are of the {'coset' if evaluation.enumerated else 'Haar'} "
            f"design but {task.name}'s evaluation design is {task.evaluation_design!r}"
        )
    if batch_size is None:
        batch_size = max(1, int(evaluations_per_batch) // evaluation.rotations.shape[1])  # type: ignore[arg-type]
    row_of = {int(key): row for row, key in enumerate(dataset.example_id.tolist())}
    missing = [int(key) for key in evaluation.example_id if int(key) not in row_of]
    if missing:
        raise KeyError(f"example ids {missing[:5]} of the evaluation rotations are not in {dataset.source}")
    rows = np.array([row_of[int(key)] for key in evaluation.example_id])
    twirl_source = evaluation.twirl_order if evaluation.enumerated else evaluation.twirl_rotations
    position = {int(key): row for row, key in enumerate(evaluation.example_id)}
    batches = []
    for start in range(0, len(rows), batch_size):
        molecules = dataset.batch(rows[start : start + batch_size]).to(dtype=dtype)
        example, rotations = make_evaluation_example(task, molecules, evaluation, seed)
        twirling = None
        if twirl_source is not None:
            values = torch.from_numpy(twirl_source[np.array([position[int(key)] for key in example.example_id])])
            twirling = values if evaluation.enumerated else values.to(dtype)
        batches.append(EvaluationBatch(example, rotations.to(dtype), twirling))
    return batches


def decompose_batches(
    task: Task, model: nn.Module, batches: Iterable[EvaluationBatch], device: torch.device | str | None = None
) -> Decomposition:
    """:func:`decompose` over every batch, concatenated: the decomposition of a whole evaluation set."""
    return Decomposition.concatenate(
        [
            decompose(task, model, batch.example, batch.rotations, twirling=batch.twirling, device=device)
            for batch in batches
        ]
    )


def twirling_ks(num_rotations: int) -> list[int]:
    """k = 1, 2, 4, ... up to the number of twirling rotations available."""
    ks, k = [], 1
    while k <= num_rotations:
        ks.append(k)
        k *= 2
    return ks


def twirled_losses(
    task: Task, predictions: Output, target: Output, inputs: Inputs, k: int, order: Tensor | None = None
) -> Tensor:
    """Loss [B] of the test-time twirled model with k rotations: the K predictions (taken in ``order [B, K]`` per
    example if given) are cut into K // k disjoint groups, each group averaged, and the loss of each average
    averaged. For i.i.d. Haar rotations its expectation is L_mean + L_equiv / k (see :func:`twirling_expectation`)."""
    if order is not None:
        predictions = {part: _take_along_rotations(value, order) for part, value in predictions.items()}
    num_rotations = next(iter(predictions.values())).shape[1]
    groups = num_rotations // k
    if groups < 1:
        raise ValueError(f"k = {k} exceeds the {num_rotations} rotations available")
    losses = []
    for group in range(groups):
        averaged = {part: value[:, group * k : (group + 1) * k].mean(dim=1) for part, value in predictions.items()}
        losses.append(task.loss(averaged, target, inputs))
    return torch.stack(losses, dim=1).mean(dim=1)


def _take_along_rotations(values: Tensor, order: Tensor) -> Tensor:
    """values [B, K, ...] reordered along K by ``order [B, K]``."""
    index = order.to(values.device).long().reshape(*order.shape, *([1] * (values.dim() - 2)))
    return torch.take_along_dim(values, index.expand(*order.shape, *values.shape[2:]), dim=1)


def twirling_expectation(mean: np.ndarray, equiv: np.ndarray, k: int, enumerated: bool = False) -> np.ndarray:
    """E[loss of the k-rotation twirl] per example from the estimators: L_mean + L_equiv / k for i.i.d. Haar
    rotations; L_mean + L_equiv (24 - k) / (23 k) for k distinct cube rotations (with L_equiv the enumerated
    variance over 24, so that k = 24 gives L_mean and k = 1 gives L_total)."""
    if not enumerated:
        return mean + equiv / k
    if not 1 <= k <= OCTAHEDRAL_ORDER:
        raise ValueError(f"k = {k} distinct cube rotations: need 1 <= k <= {OCTAHEDRAL_ORDER}")
    return mean + equiv * (OCTAHEDRAL_ORDER - k) / ((OCTAHEDRAL_ORDER - 1) * k)


def _mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
    n = len(values)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def _ratio_and_stderr(numerator: np.ndarray, denominator: np.ndarray) -> tuple[float, float]:
    """Ratio of means with its delta-method standard error over i.i.d. examples."""
    ratio = float(numerator.mean() / denominator.mean())
    n = len(numerator)
    if n < 2:
        return ratio, float("nan")
    linearised = numerator - ratio * denominator
    return ratio, float(linearised.std(ddof=1) / np.sqrt(n) / abs(denominator.mean()))


def summarize(decomposition: Decomposition, mask: Tensor | None = None) -> list[dict[str, float | str | int]]:
    """Tidy rows (part, quantity, value, stderr, n): averages of every estimator, the percentage
    100 * L_equiv / L_total and the target-free relative equivariance error E||f_g - f_bar||^2 / E||f_bar||^2."""
    rows: list[dict[str, float | str | int]] = []
    select = slice(None) if mask is None else mask.cpu().numpy().astype(bool)
    for part in decomposition.parts:
        arrays = {q: decomposition.quantity(q, part).detach().cpu().double().numpy()[select] for q in QUANTITIES}
        n = len(arrays["total"])
        if n == 0:
            continue
        for quantity, values in arrays.items():
            value, stderr = _mean_and_stderr(values)
            rows.append({"part": part, "quantity": quantity, "value": value, "stderr": stderr, "n": n})
        percent, percent_se = _ratio_and_stderr(arrays["equiv"], arrays["total"])
        rows.append(
            {"part": part, "quantity": "equiv_percent", "value": 100 * percent, "stderr": 100 * percent_se, "n": n}
        )
        relative, relative_se = _ratio_and_stderr(arrays["equiv"], arrays["twirl_sq_norm"])
        rows.append(
            {"part": part, "quantity": "relative_equivariance_error", "value": relative, "stderr": relative_se, "n": n}
        )
    return rows
