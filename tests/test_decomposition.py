"""The loss decomposition, in float64: exact identities, exact zeros for equivariant maps, unbiasedness."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from eqdyn.decomposition import (
    decompose,
    decompose_predictions,
    make_evaluation_rotations,
    summarize,
    twirled_losses,
    twirling_expectation,
    twirling_orders,
    twirling_rotations,
    twisted_predictions,
)
from eqdyn.symmetry.actions import rotate_grid_octahedral, rotate_vectors
from eqdyn.symmetry.rotations import evaluation_rotations, haar_rotations, octahedral_group
from eqdyn.tasks import FlowMatchingTask, ForceFieldTask, KeyedNoise, VoxelDenoisingTask
from eqdyn.tasks.base import Example, Inputs, NoiseSource, Output, Task
from eqdyn.testing import random_molecules

GEN = torch.Generator().manual_seed(7)


class LinearToyTask(Task):
    """x ~ N(0, I_3), y = c x + sigma eps, model f(x) = A x: the decomposition is known in closed form.

    f_bar(x) = (tr A / 3) x, so L_mean = 3 (tr A / 3 - c)^2 + 3 sigma^2 and L_equiv = ||A - (tr A / 3) I||_F^2.
    (Also shows that adding a task needs no change to the decomposition.)
    """

    name: ClassVar[str] = "linear_toy"
    output_parts: ClassVar[tuple[str, ...]] = ("y",)

    def make_example(self, molecules, noise: NoiseSource) -> Example:  # type: ignore[override]
        raise NotImplementedError  # examples are built directly in the test

    def act_on_inputs(self, inputs: Inputs, rotations: Tensor) -> Inputs:
        return {"x": (rotations @ inputs["x"].unsqueeze(-1)).squeeze(-1)}

    def act_on_outputs(self, outputs: Output, rotations: Tensor) -> Output:
        return {"y": (rotations @ outputs["y"].unsqueeze(-1)).squeeze(-1)}

    def predict(self, model: nn.Module, inputs: Inputs) -> Output:
        return {"y": model(inputs["x"])}

    def squared_norms(self, diff: Output, inputs: Inputs) -> dict[str, Tensor]:
        return {"y": diff["y"].pow(2).sum(-1)}


class PairwiseVelocity(nn.Module):
    """Exactly SO(3)-equivariant by construction: v_i = sum_j phi(|x_ij|, t) (x_i - x_j)."""

    def forward(self, positions, atomic_numbers, mask, bond_orders, t) -> Tensor:
        diff = positions.unsqueeze(2) - positions.unsqueeze(1)
        weight = torch.exp(-diff.pow(2).sum(-1)) * (1 + t.view(-1, 1, 1)) * atomic_numbers.unsqueeze(1)
        pair_mask = (mask.unsqueeze(1) & mask.unsqueeze(2)).to(positions.dtype)
        return (weight.unsqueeze(-1) * diff * pair_mask.unsqueeze(-1)).sum(2) * mask.unsqueeze(-1)


class CartesianVelocity(nn.Module):
    """Not equivariant: a fixed linear map of raw coordinates."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 3, generator=GEN, dtype=torch.float64))

    def forward(self, positions, atomic_numbers, mask, bond_orders, t) -> Tensor:
        return (positions @ self.weight + t.view(-1, 1, 1)) * mask.unsqueeze(-1)


class PairPotential(nn.Module):
    """Invariant energy from pair distances, forces = -dE/dx: exactly equivariant."""

    def forward(self, positions, atomic_numbers, mask, bond_orders) -> dict[str, Tensor]:
        if not positions.requires_grad:
            positions = positions.requires_grad_(True)
        diff = positions.unsqueeze(2) - positions.unsqueeze(1)
        pair_mask = (mask.unsqueeze(1) & mask.unsqueeze(2)) & ~torch.eye(mask.shape[1], dtype=torch.bool)
        sq = diff.pow(2).sum(-1) + (~pair_mask).to(positions.dtype)
        energy = (torch.exp(-sq) * pair_mask).sum((1, 2)) / 2
        (grad,) = torch.autograd.grad(energy.sum(), positions, create_graph=True)
        return {"energy": energy, "forces": -grad}


def _flow_example(batch: int = 5) -> Example:
    return FlowMatchingTask().make_example(random_molecules(batch, seed=1), KeyedNoise(11))


def test_total_equals_mean_plus_equiv_on_random_predictions() -> None:
    task = FlowMatchingTask()
    example = _flow_example()
    for num_rotations, enumerated in ((2, False), (8, False), (24, True)):
        preds = {"velocity": torch.randn(5, num_rotations, 6, 3, generator=GEN, dtype=torch.float64)}
        result = decompose_predictions(task, preds, example.target, example.inputs, enumerated, example.example_id)
        assert torch.allclose(
            result.total["velocity"], result.mean["velocity"] + result.equiv["velocity"], rtol=0, atol=1e-12
        )
        assert (result.equiv["velocity"] >= 0).all()


def test_decomposition_identity_through_a_model_and_parts_add_up() -> None:
    task = ForceFieldTask(energy_weight=0.3, force_weight=2.0)
    molecules = random_molecules(4, seed=2, with_labels=True)
    example = task.make_example(molecules, KeyedNoise(0))

    class Cartesian(nn.Module):
        def forward(self, positions, atomic_numbers, mask, bond_orders):
            return {"energy": positions[..., 0].sum(-1) ** 2, "forces": positions.roll(1, dims=-1) * 0.7}

    rotations = torch.from_numpy(make_evaluation_rotations(task, molecules.example_id.numpy(), 3, 6).rotations)
    result = decompose(task, Cartesian(), example, rotations)
    assert result.parts == ["energy", "forces", "all"]
    total, mean, equiv = (result.quantity(q, "all") for q in ("total", "mean", "equiv"))
    assert torch.allclose(total, mean + equiv, rtol=0, atol=1e-12)
    assert torch.allclose(total, result.total["energy"] + result.total["forces"], rtol=0, atol=1e-12)
    assert (result.equiv["energy"] > 1e-6).all() and (result.equiv["forces"] > 1e-6).all()


def test_equivariant_maps_have_zero_equivariance_error() -> None:
    example = _flow_example()
    rotations = haar_rotations(5 * 4, GEN).reshape(5, 4, 3, 3)
    flow = decompose(FlowMatchingTask(), PairwiseVelocity(), example, rotations)
    assert flow.equiv["velocity"].abs().max() < 1e-10
    assert flow.mean["velocity"].mean() > 1e-3  # not a trivial zero: the model is wrong but equivariant

    task = ForceFieldTask()
    molecules = random_molecules(4, seed=3, with_labels=True)
    forces = decompose(
        task, PairPotential(), task.make_example(molecules, KeyedNoise(0)), haar_rotations(16, GEN).reshape(4, 4, 3, 3)
    )
    assert forces.quantity("equiv").abs().max() < 1e-10


def test_non_equivariant_map_has_positive_equivariance_error() -> None:
    example = _flow_example()
    rotations = haar_rotations(5 * 4, GEN).reshape(5, 4, 3, 3)
    result = decompose(FlowMatchingTask(), CartesianVelocity(), example, rotations)
    rows = {r["quantity"]: r for r in summarize(result)}
    assert rows["equiv_percent"]["value"] > 1.0
    assert rows["relative_equivariance_error"]["value"] > 1e-2


class OctahedralTwirl(nn.Module):
    """The 24-rotation twirl of any grid map: exactly equivariant to the cube group."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, grid: Tensor) -> Tensor:
        group = octahedral_group()
        outs = [rotate_grid_octahedral(self.inner(rotate_grid_octahedral(grid, g)), g.T) for g in group]
        return torch.stack(outs).mean(0)


def test_octahedral_twirl_of_any_map_has_zero_equivariance_error_in_the_coset_design() -> None:
    task = VoxelDenoisingTask(elements=(1, 6), grid_size=6)
    conv = nn.Conv3d(2, 2, 3, padding=1).double()
    grids = torch.randn(3, 2, 6, 6, 6, generator=GEN, dtype=torch.float64)
    example = Example({"grid": grids + 0.3}, {"grid": grids}, torch.arange(3))
    rotations = octahedral_group().expand(3, 24, 3, 3)
    twirled = decompose(task, OctahedralTwirl(conv), example, rotations)
    assert twirled.equiv["grid"].abs().max() < 1e-10
    plain = decompose(task, conv, example, rotations)
    assert (plain.equiv["grid"] > 1e-4).all()
    # enumerating the group: the mean term is the loss of the exact twirl, with no correction
    exact_twirl = {"grid": OctahedralTwirl(conv)(example.inputs["grid"]).detach()}
    assert torch.allclose(plain.mean["grid"], task.loss(exact_twirl, example.target, example.inputs), atol=1e-12)


def _toy_truth(matrix: Tensor, c: float, sigma: float) -> tuple[float, float]:
    trace_part = float(torch.trace(matrix)) / 3
    l_mean = 3 * (trace_part - c) ** 2 + 3 * sigma**2
    l_equiv = float((matrix - trace_part * torch.eye(3, dtype=matrix.dtype)).pow(2).sum())
    return l_mean, l_equiv


@pytest.mark.parametrize("num_rotations", [2, 8])
def test_estimators_are_unbiased_and_the_plugin_is_biased_by_equiv_over_k(num_rotations: int) -> None:
    gen = torch.Generator().manual_seed(100 + num_rotations)
    matrix = torch.tensor([[1.0, 0.6, 0.0], [-0.2, 0.4, 0.3], [0.5, 0.0, -0.2]], dtype=torch.float64)
    c, sigma, n = 0.2, 0.5, 40_000
    task = LinearToyTask()
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = c * x + sigma * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    model = nn.Linear(3, 3, bias=False).double()
    model.weight.data = matrix.clone()
    rotations = haar_rotations(n * num_rotations, gen).reshape(n, num_rotations, 3, 3)
    result = decompose(task, model, Example({"x": x}, {"y": y}, torch.arange(n)), rotations)
    true_mean, true_equiv = _toy_truth(matrix, c, sigma)
    rows = {r["quantity"]: r for r in summarize(result)}
    for quantity, truth in (("mean", true_mean), ("equiv", true_equiv), ("total", true_mean + true_equiv)):
        assert abs(rows[quantity]["value"] - truth) < 4 * rows[quantity]["stderr"], quantity
    plugin = rows["mean_plugin"]
    bias = true_equiv / num_rotations
    assert abs(plugin["value"] - (true_mean + bias)) < 4 * plugin["stderr"]
    assert plugin["value"] - true_mean > 8 * plugin["stderr"]  # visibly biased


def test_test_time_twirling_loss_is_mean_plus_equiv_over_k() -> None:
    gen = torch.Generator().manual_seed(5)
    matrix = torch.tensor([[0.8, 0.5, 0.1], [0.0, 0.3, -0.4], [0.2, 0.1, 0.1]], dtype=torch.float64)
    n, num_rotations = 20_000, 8
    task = LinearToyTask()
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = 0.1 * x + 0.3 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    model = nn.Linear(3, 3, bias=False).double()
    model.weight.data = matrix.clone()
    rotations = haar_rotations(n * num_rotations, gen).reshape(n, num_rotations, 3, 3)
    with torch.no_grad():
        preds = twisted_predictions(task, model, {"x": x}, rotations)
    true_mean, true_equiv = _toy_truth(matrix, 0.1, 0.3)
    for k in (1, 2, 4, 8):
        losses = twirled_losses(task, preds, {"y": y}, {"x": x}, k).numpy()
        stderr = losses.std(ddof=1) / np.sqrt(n)
        assert abs(losses.mean() - (true_mean + true_equiv / k)) < 4 * stderr, k


def _toy_model_and_data(n: int, seed: int) -> tuple[LinearToyTask, nn.Module, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(3, 3, bias=False).double()
    model.weight.data = torch.tensor([[0.8, 0.5, 0.1], [0.0, 0.3, -0.4], [0.2, 0.1, 0.1]], dtype=torch.float64)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = 0.1 * x + 0.3 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return LinearToyTask(), model, x, y


def _paired_check(measured: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Mean of measured - expected per example, in paired standard errors; and the old quadrature SE / paired SE."""
    difference = measured - expected
    n = len(difference)
    paired = difference.std(ddof=1) / np.sqrt(n)
    quadrature = np.sqrt(measured.var(ddof=1) + expected.var(ddof=1)) / np.sqrt(n)
    return float(difference.mean() / paired), float(quadrature / paired)


def test_twirling_check_on_independent_haar_rotations_agrees_and_catches_a_wrong_prediction() -> None:
    """The twirled loss on rotations independent of the estimator's agrees with L_mean + L_equiv / k by the paired
    SE for a non-equivariant model, and a prediction 2.5% off fails by the same rule."""
    n, seed = 20_000, 3
    task, model, x, y = _toy_model_and_data(n, seed=11)
    ids = np.arange(n)
    estimator = torch.from_numpy(evaluation_rotations(seed, ids, 8))
    twirl = torch.from_numpy(twirling_rotations(seed, ids, 8))
    assert not torch.allclose(estimator, twirl)  # a separate stream
    with torch.no_grad():
        result = decompose_predictions(
            task,
            twisted_predictions(task, model, {"x": x}, estimator),
            {"y": y},
            {"x": x},
            False,
            torch.from_numpy(ids),
        )
        twirl_predictions = twisted_predictions(task, model, {"x": x}, twirl)
    mean, equiv = result.quantity("mean").numpy(), result.quantity("equiv").numpy()
    assert equiv.mean() > 0.5 * mean.mean()  # far from equivariant: the check is not trivially zero
    for k in (1, 2, 4, 8):
        measured = twirled_losses(task, twirl_predictions, {"y": y}, {"x": x}, k).numpy()
        expected = twirling_expectation(mean, equiv, k)
        z, looseness = _paired_check(measured, expected)
        assert abs(z) <= 3.0, (k, z)
        wrong, _ = _paired_check(measured, 1.025 * expected)
        assert abs(wrong) > 3.0, (k, wrong)
        assert looseness > 1.5, (k, looseness)  # two SEs in quadrature ignore the pairing: too loose
        # k = 1 and k = K on independent rotations are tests too, not identities
        assert abs(measured.mean() - expected.mean()) > 1e-9


def test_twirling_check_for_cube_rotations_without_replacement() -> None:
    """Coset design: k of the 24 cube rotations without replacement have expected loss
    L_mean + L_equiv (24 - k) / (23 k), not L_mean + L_equiv / k; and k = 1 (all 24 singletons) is L_total exactly."""
    n, seed = 20_000, 5
    task, model, x, y = _toy_model_and_data(n, seed=12)
    ids = np.arange(n)
    cube = octahedral_group().expand(n, 24, 3, 3)
    orders = torch.from_numpy(twirling_orders(seed, ids))
    assert sorted(orders[0].tolist()) == list(range(24)) and not torch.equal(orders[0], orders[1])
    with torch.no_grad():
        predictions = twisted_predictions(task, model, {"x": x}, cube)
    result = decompose_predictions(task, predictions, {"y": y}, {"x": x}, True, torch.from_numpy(ids))
    mean, equiv = result.quantity("mean").numpy(), result.quantity("equiv").numpy()
    for k in (1, 2, 4, 8, 16):
        measured = twirled_losses(task, predictions, {"y": y}, {"x": x}, k, orders).numpy()
        expected = twirling_expectation(mean, equiv, k, enumerated=True)
        if k == 1:
            np.testing.assert_allclose(measured, result.quantity("total").numpy(), rtol=1e-12)
            continue
        z, _ = _paired_check(measured, expected)
        assert abs(z) <= 3.0, (k, z)
        assert abs(_paired_check(measured, 1.025 * expected)[0]) > 3.0, k
        haar_formula = twirling_expectation(mean, equiv, k)
        assert abs(_paired_check(measured, haar_formula)[0]) > 3.0, k  # the i.i.d. formula is wrong here
    np.testing.assert_allclose(twirling_expectation(mean, equiv, 24, enumerated=True), mean)


def test_twirling_rotations_leave_the_estimator_rotations_unchanged() -> None:
    task = FlowMatchingTask()
    ids = np.array([4, 9, 1])
    plain = make_evaluation_rotations(task, ids, 3, 6)
    with_twirl = make_evaluation_rotations(task, ids, 3, 6, num_twirl_rotations=4)
    assert plain.twirl_rotations is None and with_twirl.twirl_rotations.shape == (3, 4, 3, 3)
    np.testing.assert_array_equal(plain.rotations, with_twirl.rotations)
    # keyed by (seed, example id, j): a larger M extends a smaller one, whatever the other examples are
    np.testing.assert_array_equal(twirling_rotations(3, ids[1:], 8)[:, :4], with_twirl.twirl_rotations[1:])
    voxel = make_evaluation_rotations(VoxelDenoisingTask(elements=(1, 6), grid_size=6), ids, 3, 6, 8)
    assert voxel.twirl_rotations is None and voxel.twirl_order.shape == (3, 24)


def test_chunked_twisted_predictions_match_one_pass() -> None:
    example = _flow_example()
    rotations = haar_rotations(5 * 6, GEN).reshape(5, 6, 3, 3)
    model = CartesianVelocity()
    whole = twisted_predictions(FlowMatchingTask(), model, example.inputs, rotations)
    chunked = twisted_predictions(FlowMatchingTask(), model, example.inputs, rotations, chunk_size=4)
    assert whole["velocity"].shape == (5, 6, 6, 3)
    assert torch.allclose(chunked["velocity"], whole["velocity"], rtol=0, atol=1e-12)


def test_twist_reads_predictions_back_in_the_input_frame() -> None:
    """For an equivariant model every twisted prediction equals the plain prediction."""
    example = _flow_example()
    rotation = haar_rotations(5, GEN)
    task = FlowMatchingTask()
    twisted = task.twist(PairwiseVelocity(), example.inputs, rotation)["velocity"]
    plain = task.predict(PairwiseVelocity(), example.inputs)["velocity"]
    assert torch.allclose(twisted, plain, atol=1e-12)
    rotated_back = rotate_vectors(
        task.predict(PairwiseVelocity(), task.act_on_inputs(example.inputs, rotation))["velocity"],
        rotation.transpose(-1, -2),
    )
    assert torch.allclose(rotated_back, twisted, atol=1e-12)


def test_decompose_reads_the_design_from_the_task_runs_without_gradients_and_summarises() -> None:
    example = _flow_example()
    rotations = haar_rotations(5 * 4, GEN).reshape(5, 4, 3, 3)
    model = nn.Sequential(nn.Linear(3, 3)).double()

    class Velocity(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, positions, atomic_numbers, mask, bond_orders, t):
            return self.inner(positions)

    task = FlowMatchingTask()
    result = decompose(task, Velocity(), example, rotations)
    assert not result.enumerated and not result.total["velocity"].requires_grad
    assert all(p.grad is None for p in model.parameters())
    summary = result.summary()
    assert list(summary.columns) == ["part", "t_bin", "quantity", "k", "value", "stderr", "n"]
    assert set(summary["t_bin"]) > {"all"}  # flow matching: per-t-bin rows too
    total = summary[(summary["quantity"] == "total") & (summary["t_bin"] == "all")]["value"].item()
    assert total == pytest.approx(float(result.quantity("total").mean()), rel=1e-12)
    with pytest.warns(DeprecationWarning):
        decompose(task, Velocity(), example, rotations, enumerated=False)
    with pytest.raises(ValueError, match="contradicts"):
        decompose(task, Velocity(), example, rotations, enumerated=True)
    with pytest.raises(ValueError, match="24 cube rotations"):  # the coset design needs the whole group
        voxel = VoxelDenoisingTask(elements=(1, 6), grid_size=6)
        grids = torch.randn(2, 2, 6, 6, 6, generator=GEN, dtype=torch.float64)
        decompose(
            voxel,
            nn.Conv3d(2, 2, 1).double(),
            Example({"grid": grids}, {"grid": grids}, torch.arange(2)),
            octahedral_group()[:4].expand(2, 4, 3, 3),
        )


def test_decompose_with_a_twirling_set_reports_every_k() -> None:
    """Haar twirling rotations go through the model separately: k = 1, 2, 4, 8 each give a per-example column and
    the three summary rows; k = 1 is the mean single-rotation loss on the twirling rotations."""
    task = FlowMatchingTask()
    example = _flow_example()
    rotations = haar_rotations(5 * 4, GEN).reshape(5, 4, 3, 3)
    twirling = haar_rotations(5 * 8, GEN).reshape(5, 8, 3, 3)
    model = CartesianVelocity()
    result = decompose(task, model, example, rotations, twirling=twirling)
    assert sorted(result.twirled) == [1, 2, 4, 8]
    with torch.no_grad():
        single = torch.stack(
            [
                task.loss(task.twist(model, example.inputs, twirling[:, j]), example.target, example.inputs)
                for j in range(8)
            ],
            dim=1,
        ).mean(1)
    torch.testing.assert_close(result.twirled[1], single, rtol=1e-12, atol=1e-12)
    table = result.examples()
    assert list(table.columns) == ["example_id", "total", "twirled_1", "twirled_2", "twirled_4", "twirled_8"]
    twirl_rows = result.summary().dropna(subset=["k"])
    assert set(twirl_rows["quantity"]) == {"twirled_loss", "twirled_loss_predicted", "twirled_loss_minus_predicted"}
