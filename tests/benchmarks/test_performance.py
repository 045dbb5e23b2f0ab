"""The performance report: every section and row from one tiny CPU run, FLOP counts against an analytic count,
positive finite ratios. No timed assertions: timings are only required to be positive and finite."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from eqdyn.benchmarks import performance
from eqdyn.benchmarks.decomposition import CASES as DECOMPOSITION_CASES
from eqdyn.benchmarks.hvp import ANALYSED_MODELS, HvpRow
from eqdyn.benchmarks.performance import (
    EQUIVARIANCE_PAIRS,
    H100_BF16_MATMUL_TFLOPS,
    LadderRow,
    Report,
    main,
    resolve_peak_tflops,
    targets,
    training_step_flops,
)
from eqdyn.data.benchmark_conformers import ScalingRow
from eqdyn.models import build_model
from eqdyn.models.benchmark import BenchmarkRow, synthetic_molecules

TINY = (
    "--sizes xs s --batch 2 --atoms 4 --voxel-batch 1 --voxel-size 4 --warmup 0 --repeats 1 --hvp-batch 1 "
    "--decomposition-batch 2 --rotations 2 --analysis-atoms 4 --grid-size 8 --data-molecules 6 --data-repeats 1"
)


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """Body rows of the first table after a heading, as lists of cell texts."""
    section = markdown.split(heading, 1)[1]
    table = [line for line in section.split("\n## ", 1)[0].splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]


def positive_finite(text: str) -> bool:
    value = float(text.replace(",", ""))
    return math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, str]]]:
    directory = tmp_path_factory.mktemp("performance")
    out, table = directory / "performance.md", directory / "performance.csv"
    assert main(["--device", "cpu", *TINY.split(), "--out", str(out), "--csv", str(table)]) == 0
    with table.open() as handle:
        return out.read_text(), list(csv.DictReader(handle))


def test_report_states_the_machine_and_the_command(report: tuple[str, list[dict[str, str]]]) -> None:
    markdown, _ = report
    for line in ("- device: CPU", f"- torch: {torch.__version__}", "- date: ", "- command: `python -m eqdyn"):
        assert line in markdown
    assert "--sizes xs s" in markdown
    assert "torch.compile no" in markdown
    assert "peak: n/a" in markdown


def test_ladder_has_a_row_per_size_with_flops_and_no_peak_fraction_on_cpu(
    report: tuple[str, list[dict[str, str]]],
) -> None:
    rows = table_rows(report[0], "## 1. Flow-matching transformer size ladder")
    assert [row[0] for row in rows] == ["xs", "s"]
    for row in rows:
        assert all(positive_finite(cell) for cell in row[2:7]), row
        assert row[7] == "n/a"
    parameters = [int(row[2].replace(",", "")) for row in rows]
    flops = [float(row[5].replace(",", "")) for row in rows]
    assert parameters[0] < parameters[1] and flops[0] < flops[1]


def test_every_pair_hvp_model_and_decomposition_case_has_a_positive_finite_ratio(
    report: tuple[str, list[dict[str, str]]],
) -> None:
    markdown, _ = report
    pairs = table_rows(markdown, "## 2. Equivariant / non-equivariant")
    assert [(row[0], row[1].split()[0], row[5]) for row in pairs] == list(EQUIVARIANCE_PAIRS)
    assert all(positive_finite(row[9]) for row in pairs)
    hvp = table_rows(markdown, "## 3. Hessian-vector product")
    assert [(row[0], row[1]) for row in hvp] == list(ANALYSED_MODELS)
    for row in hvp:
        assert positive_finite(row[3])
        # a path may fail for a model (then "n/a"), but the one "auto" picks must have worked
        assert any(positive_finite(ratio) for ratio in (row[5], row[7]) if ratio != "n/a"), row
    decomposition = table_rows(markdown, "## 4. Decomposition")
    assert [(row[0], row[1], row[2]) for row in decomposition] == [case[:3] for case in DECOMPOSITION_CASES]
    assert all(positive_finite(row[6]) for row in decomposition)


def test_csv_is_tidy_and_matches_the_sections(report: tuple[str, list[dict[str, str]]]) -> None:
    _, rows = report
    assert set(rows[0]) == {"device", "torch", "section", "task", "family", "size", "metric", "value"}
    assert {row["section"] for row in rows} == {"ladder", "equivariance_ratio", "hvp", "decomposition", "data"}
    ratios = [row for row in rows if row["metric"].startswith("ratio")]
    assert len(ratios) == len(EQUIVARIANCE_PAIRS) + len(DECOMPOSITION_CASES)
    assert all(positive_finite(row["value"]) for row in ratios)
    flops = [float(row["value"]) for row in rows if row["metric"] == "flops_per_step"]
    assert len(flops) == 2 and all(value > 0 for value in flops)


def analytic_flow_transformer_flops(
    batch: int, atoms: int, dim: int, layers: int, heads: int, attention_backward: float
) -> int:
    """Multiply-adds x 2 of a FlowTransformer training step counted by hand. A product's backward costs twice its
    forward (input and weight gradients), once where its input needs no gradient (the embeddings of coordinates and
    of sinusoidal time features, and the bond-bias table times the one-hot bond orders); attention backward costs
    ``attention_backward`` x its forward."""
    tokens, time_features = batch * atoms, 2 * 16
    bond_types = 5
    input_products = (
        2 * tokens * 3 * dim + 2 * batch * time_features * dim + 2 * batch * atoms * atoms * bond_types * layers * heads
    )
    products = 2 * batch * dim * dim + layers * 2 * tokens * 12 * dim * dim + 2 * tokens * dim * 3
    attention = layers * 4 * batch * atoms * atoms * dim  # Q K^T and softmax V
    return 2 * input_products + 3 * products + round((1 + attention_backward) * attention)


@pytest.mark.parametrize("attention", ["math", "sdpa"])
def test_training_step_flops_match_an_analytic_count(attention: str) -> None:
    # the learned bond bias needs a gradient, which CPU's fused attention kernel lacks: SDPA then runs the explicit
    # products too, so both implementations count the same on CPU
    batch, atoms, dim, layers = 3, 5, 16, 2
    model = build_model("flow_matching", "transformer", "xs", dim=dim, layers=layers, heads=2, attention=attention)
    molecules = synthetic_molecules(batch, atoms, torch.device("cpu"))
    counted = training_step_flops("flow_matching", model, molecules)
    assert counted == analytic_flow_transformer_flops(batch, atoms, dim, layers, 2, attention_backward=2.0)
    assert all(parameter.grad is None for parameter in model.parameters())


def test_cpu_fused_attention_is_counted_like_the_cuda_kernels() -> None:
    """Without FlopCounterMode's CUDA-only formulas the CPU kernel would count zero; its backward recomputes
    Q K^T (5 products against 2 forward)."""
    batch, heads, atoms, head_dim = 2, 3, 5, 8

    class Attention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query = torch.nn.Parameter(torch.randn(batch, heads, atoms, head_dim))

        def forward(self, data: dict[str, torch.Tensor]) -> torch.Tensor:
            bias = torch.zeros(batch, heads, atoms, atoms)  # constant: the fused kernel is eligible
            return torch.nn.functional.scaled_dot_product_attention(self.query, self.query, self.query, bias)

    forward = 2 * 2 * batch * heads * atoms * atoms * head_dim
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(performance, "training_loss", lambda task, model, data: model(data).sum())
        assert training_step_flops("attention", Attention(), {}) == forward + 5 * forward // 2


def test_training_step_flops_grow_with_model_size() -> None:
    molecules = synthetic_molecules(2, 4, torch.device("cpu"))
    counts = [
        training_step_flops("flow_matching", build_model("flow_matching", "transformer", size), molecules)
        for size in ("xs", "s", "m")
    ]
    assert 0 < counts[0] < counts[1] < counts[2]


def test_peak_is_given_or_the_h100_bf16_peak_on_cuda_only() -> None:
    assert resolve_peak_tflops(None, torch.device("cpu"), bf16=True) is None
    assert resolve_peak_tflops(None, torch.device("cuda"), bf16=False) is None
    assert resolve_peak_tflops(None, torch.device("cuda"), bf16=True) == H100_BF16_MATMUL_TFLOPS
    assert resolve_peak_tflops(100.0, torch.device("cpu"), bf16=False) == 100.0


def test_report_ends_with_the_speed_targets_and_the_data_section(report: tuple[str, list[dict[str, str]]]) -> None:
    markdown, _ = report
    rows = table_rows(markdown, "## 6. Speed targets")
    assert [row[0].split(" ")[0] for row in rows] == ["HVP", "data", "small"]
    assert rows[2][1:] == ["no --baseline with these sizes", "not measured"]
    assert [row[1] for row in table_rows(markdown, "## 5. Data preparation")] == ["serial", "static", "dynamic"]


def constructed_report(hvp_ratios: list[float], data_speedup: float, ladder_speedup: float) -> Report:
    report = Report("cpu", "2", "today", "command", [], None)
    for index, ratio in enumerate(hvp_ratios):
        report.hvp.append(
            HvpRow("flow_matching", f"model{index}", 10, 1.0, 5.0, ratio, "reverse_over_reverse", (0, 0, 0))
        )
    report.data = [ScalingRow(1, "serial", 100, 10.0), ScalingRow(2, "static", 100, 10.0 / data_speedup)]
    for size, parameters in (("xs", 30_000), ("s", 200_000), ("l", 5_000_000)):
        timing = BenchmarkRow("flow_matching", "transformer", size, "none", parameters, 64, 10.0, 6400.0)
        report.ladder.append(LadderRow(timing, {}, 1, None))
        # the large size is far below its baseline: it is not a small transformer, so it must not count
        report.baseline[size] = 6400.0 / (ladder_speedup if parameters < 1_000_000 else 0.5)
    return report


def test_each_speed_target_is_met_or_not_by_the_numbers() -> None:
    assert [target.met for target in targets(constructed_report([2.5, 2.9], 1.9, 2.1))] == [True, True, True]
    assert [target.met for target in targets(constructed_report([2.5, 3.4], 1.7, 1.5))] == [False, False, False]
    missed = targets(constructed_report([2.5, 3.4], 1.7, 1.5))
    assert "flow_matching/model1" in missed[0].measured and "1.70x" in missed[1].measured
    assert "xs 1.50x, s 1.50x" == missed[2].measured
