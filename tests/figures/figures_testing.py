"""Synthetic study tables in the analyses' exact formats, for the figure and claims tests.

The numbers follow simple laws (the equivariance share decays as a power of the step, the twirled loss is
L_mean + L_equiv / k) with knobs that let each claims verdict be hit on purpose.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DECOMPOSITION_COLUMNS = ("run", "step", "part", "t_bin", "quantity", "k", "value", "stderr", "n")


@dataclass
class SyntheticRun:
    name: str
    task: str
    family: str
    equivariance: str
    base_run: str | None = None
    sweep: dict | None = None
    size: str = "s"
    seed: int = 0
    optimizer: str = "adam"
    parameters: int = 100_000
    final_percent: float = 1.0  # equivariance share at the last step (percent)
    percent_se_fraction: float = 0.05  # SE of the percentage, as a fraction of its value
    loss_scale: float = 1.0


@dataclass
class SyntheticStudy:
    root: Path
    runs: list[SyntheticRun]
    steps: list[int] = field(default_factory=lambda: [0, 1, 3, 10, 31, 100, 316, 1000, 3162, 10000, 20000])
    num_rotations: int = 8
    n: int = 64

    @property
    def results(self) -> Path:
        return self.root / "results" / "synthetic"

    def run_json(self, run: SyntheticRun) -> Path:
        return self.results / "runs" / run.name / "run.json"

    def manifest(self, run: SyntheticRun) -> Path:
        return self.results / "runs" / run.name / "manifest.json"

    def decomposition(self, run: SyntheticRun) -> Path:
        return self.results / "analysis" / "decomposition" / f"{run.name}.csv"

    def run_files(self) -> list[Path]:
        return [self.run_json(r) for r in self.runs]

    def manifest_files(self) -> list[Path]:
        return [self.manifest(r) for r in self.runs]

    def decomposition_files(self) -> list[Path]:
        return [self.decomposition(r) for r in self.runs]


def _write_csv(path: Path, columns, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def percent_curve(steps: list[int], final_percent: float, equivariant: bool) -> np.ndarray:
    """Starts near 40% and decays as a power law to ``final_percent`` at the last step (1e-12 if equivariant)."""
    if equivariant:
        return np.full(len(steps), 1e-12)
    s = np.maximum(np.asarray(steps, dtype=float), 1.0)
    exponent = np.log(40.0 / final_percent) / np.log(s[-1])
    return 40.0 * s ** (-exponent)


def write_study(study: SyntheticStudy) -> SyntheticStudy:
    rng = np.random.default_rng(0)
    for run in study.runs:
        equivariant = run.equivariance != "none"
        base = run.base_run or run.name
        run_config = {
            "name": run.name,
            "base_run": base,
            "sweep": run.sweep,
            "task": run.task,
            "task_settings": {},
            "model": {"family": run.family, "size": run.size, "overrides": {}},
            "training": {
                "seed": run.seed,
                "optimizer": run.optimizer,
                "steps": study.steps[-1],
                "num_train_molecules": None,
            },
            "checkpoint_steps": study.steps,
        }
        study.run_json(run).parent.mkdir(parents=True, exist_ok=True)
        study.run_json(run).write_text(json.dumps(run_config))
        study.manifest(run).write_text(
            json.dumps(
                {
                    "run": run.name,
                    "task": run.task,
                    "equivariance": run.equivariance,
                    "parameters": run.parameters,
                    "train_molecules": 100,
                    "checkpoints": [
                        {"step": s, "file": f"checkpoints/step_{s:07d}.pt", "sha256": "0" * 64} for s in study.steps
                    ],
                }
            )
        )
        percent = percent_curve(study.steps, run.final_percent, equivariant)
        rows = []
        part = "velocity" if run.task == "flow_matching" else "all"
        for step, p in zip(study.steps, percent, strict=True):
            total = run.loss_scale * (1.0 + 5.0 / (1.0 + step) ** 0.5)
            equiv = total * p / 100
            mean = total - equiv
            se = 0.02 * total
            values = {
                "total": (total, se),
                "mean": (mean, se),
                "mean_plugin": (mean + equiv / study.num_rotations, se),
                "equiv": (equiv, equiv * run.percent_se_fraction),
                "twirl_sq_norm": (10.0, 0.1),
                "equiv_percent": (p, p * run.percent_se_fraction),
                "relative_equivariance_error": (equiv / 10.0, equiv / 10.0 * 0.05),
            }
            for quantity, (value, stderr) in values.items():
                rows.append(
                    {
                        "run": run.name,
                        "step": step,
                        "part": part,
                        "t_bin": "all",
                        "quantity": quantity,
                        "k": "",
                        "value": value,
                        "stderr": stderr,
                        "n": study.n,
                    }
                )
            if run.task != "voxel_denoising":
                k = 1
                while k <= study.num_rotations:
                    predicted = mean + equiv / k
                    noise = 0.0 if k in (1, study.num_rotations) else rng.normal(0, 0.1 * se)
                    rows.append(
                        {
                            "run": run.name,
                            "step": step,
                            "part": "all",
                            "t_bin": "all",
                            "quantity": "twirled_loss",
                            "k": k,
                            "value": predicted + noise,
                            "stderr": se,
                            "n": study.n,
                        }
                    )
                    rows.append(
                        {
                            "run": run.name,
                            "step": step,
                            "part": "all",
                            "t_bin": "all",
                            "quantity": "twirled_loss_predicted",
                            "k": k,
                            "value": predicted,
                            "stderr": se,
                            "n": study.n,
                        }
                    )
                    rows.append(
                        {
                            "run": run.name,
                            "step": step,
                            "part": "all",
                            "t_bin": "all",
                            "quantity": "twirled_loss_minus_predicted",
                            "k": k,
                            "value": noise,
                            "stderr": 0.1 * se,
                            "n": study.n,
                        }
                    )  # the paired difference
                    k *= 2
        _write_csv(study.decomposition(run), DECOMPOSITION_COLUMNS, rows)
    return study


def default_runs(final_percent: float = 1.0, percent_se_fraction: float = 0.05) -> list[SyntheticRun]:
    """Two tasks with an augmented and an equivariant base run each, a seed, size, dataset-size and optimizer sweep."""
    kw = {"final_percent": final_percent, "percent_se_fraction": percent_se_fraction}
    runs = [
        SyntheticRun("flow_matching-transformer", "flow_matching", "transformer", "none", **kw),
        SyntheticRun("flow_matching-egnn", "flow_matching", "egnn", "SO3"),
        SyntheticRun("force_field-transformer", "force_field", "transformer", "none", **kw),
        SyntheticRun("force_field-painn", "force_field", "painn", "E3", loss_scale=0.5),
        SyntheticRun("voxel_denoising-unet3d", "voxel_denoising", "unet3d", "none", **kw),
        SyntheticRun("voxel_denoising-octahedral_unet", "voxel_denoising", "octahedral_unet", "octahedral"),
    ]
    for base in ("flow_matching-transformer", "force_field-transformer"):
        task = base.split("-")[0]
        runs += [
            SyntheticRun(
                f"{base}--seed-1",
                task,
                "transformer",
                "none",
                base_run=base,
                sweep={"factor": "seed", "value": 1},
                seed=1,
                **kw,
            ),
            SyntheticRun(
                f"{base}--size-xs",
                task,
                "transformer",
                "none",
                base_run=base,
                sweep={"factor": "size", "value": "xs"},
                size="xs",
                parameters=30_000,
                **kw,
            ),
            SyntheticRun(
                f"{base}--num_train_molecules-50",
                task,
                "transformer",
                "none",
                base_run=base,
                sweep={"factor": "num_train_molecules", "value": 50},
                **kw,
            ),
            SyntheticRun(
                f"{base}--optimizer-sgd",
                task,
                "transformer",
                "none",
                base_run=base,
                sweep={"factor": "optimizer", "value": "sgd"},
                optimizer="sgd",
                **kw,
            ),
        ]
    return runs


def write_hessian(
    study: SyntheticStudy,
    run: str,
    kappa_ratio: float = 1000.0,
    kappa_se_fraction: float = 0.1,
    with_stderr: bool = True,
) -> tuple[Path, Path]:
    """Hessian table and density of one run: kappa(L_mean) = kappa_ratio * kappa(L_equiv)."""
    rows, density = [], []
    grid = np.concatenate([-np.geomspace(1e-1, 1e-4, 20), np.geomspace(1e-4, 1e2, 60)])
    for step in study.steps:
        for loss, kappa in (("mean", 50.0 * kappa_ratio), ("equiv", 50.0), ("plugin", 60.0), ("total", 70.0)):
            se = kappa * kappa_se_fraction if with_stderr else ""
            for quantity, value, stderr in (
                ("kappa_10", kappa, se),
                ("kappa_100", kappa * 3, se),
                ("sharpness", 10 + kappa**0.5, "" if not with_stderr else 0.5),
                ("trace_per_parameter", 1e-3, ""),
                ("loss_value", 0.5, ""),
            ):
                rows.append(
                    {
                        "run": run,
                        "step": step,
                        "loss": loss,
                        "quantity": quantity,
                        "index": "",
                        "value": value,
                        "stderr": stderr,
                    }
                )
            for index in range(1, 11):
                rows.append(
                    {
                        "run": run,
                        "step": step,
                        "loss": loss,
                        "quantity": "eigenvalue",
                        "index": index,
                        "value": 10.0 / index,
                        "stderr": "",
                    }
                )
            width = 1.0 if loss == "mean" else 0.1
            for eigenvalue in grid:
                density.append(
                    {
                        "run": run,
                        "step": step,
                        "loss": loss,
                        "eigenvalue": eigenvalue,
                        "density": float(np.exp(-abs(eigenvalue) / width) / width + 1e-9),
                    }
                )
    base = study.results / "analysis" / "hessian"
    table = _write_csv(base / f"{run}.csv", ("run", "step", "loss", "quantity", "index", "value", "stderr"), rows)
    dens = _write_csv(base / f"{run}_density.csv", ("run", "step", "loss", "eigenvalue", "density"), density)
    return table, dens


def write_gradients(study: SyntheticStudy, run: str, with_norm: bool = True, relation: float = 1.0) -> Path:
    """Gradient table of one run; ``relation`` > 0 makes L_equiv rise with the non-equivariant norm."""
    rows = []
    for index, step in enumerate(study.steps):
        values = {
            "grad_norm_mean": 1.0,
            "grad_norm_equiv": 0.5 / (1 + index),
            "grad_share_equiv": 0.3 / (1 + index),
            "grad_cosine": 0.1 * np.cos(index),
            "relative_equivariance_error": 0.5 / (1 + index) ** 1.5,
            "parameter_distance_from_init": np.sqrt(step),
        }
        if with_norm:
            values["nonequivariant_parameter_sq_norm"] = 10.0 / (1 + index) ** relation
        for quantity, value in values.items():
            rows.append({"run": run, "step": step, "quantity": quantity, "value": value, "stderr": ""})
    return _write_csv(
        study.results / "analysis" / "gradients" / f"{run}.csv", ("run", "step", "quantity", "value", "stderr"), rows
    )


def write_efficiency(study: SyntheticStudy, seconds: dict[str, float], device: str = "cpu") -> Path:
    rows = []
    for run in study.runs:
        if run.name in seconds:
            rows.append(
                {
                    "run": run.name,
                    "task": run.task,
                    "model": run.family,
                    "size": run.size,
                    "equivariance": run.equivariance,
                    "parameters": run.parameters,
                    "batch_size": 32,
                    "seconds_per_step": seconds[run.name],
                    "seconds_per_step_stderr": 0.001,
                    "threads": 2,
                    "device": device,
                }
            )
    return _write_csv(
        study.results / "analysis" / "efficiency.csv",
        (
            "run",
            "task",
            "model",
            "size",
            "equivariance",
            "parameters",
            "batch_size",
            "seconds_per_step",
            "seconds_per_step_stderr",
            "threads",
            "device",
        ),
        rows,
    )


def write_gradients_narrow_norm(study: SyntheticStudy, run: str, low: float = 21.6, high: float = 22.4) -> Path:
    """Gradient table of one run whose squared non-equivariant norm spans a few percent, as in the default study's
    transformers (21.6-22.4): a log axis over such a range labels its minor ticks on top of each other."""
    path = write_gradients(study, run, with_norm=False)
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=("run", "step", "quantity", "value", "stderr"))
        for step, value in zip(study.steps, np.linspace(low, high, len(study.steps)), strict=True):
            writer.writerow(
                {"run": run, "step": step, "quantity": "nonequivariant_parameter_sq_norm", "value": value, "stderr": ""}
            )
    return path
