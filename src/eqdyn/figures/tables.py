"""Read the analyses' tidy tables and the runs' files, and pick the series the figures and the claims use."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

Z95 = 1.959963984540054  # two-sided 95% normal quantile
NOT_TRAINED = "not trained"  # status of a run read without its manifest when other runs' manifests are given


@dataclass(frozen=True)
class RunInfo:
    """What the figures need to know about a run: its identity from run.json, its size from manifest.json."""

    name: str
    task: str
    base_run: str
    family: str
    size: str
    seed: int
    optimizer: str
    sweep_factor: str | None
    sweep_value: Any
    equivariance: str
    parameters: int | None
    train_molecules: int | None
    checkpoint_steps: tuple[int, ...] = field(default=())
    num_train_molecules: int | None = None
    # the trainer's outcome from manifest.json: "finished" or "diverged" (manifests written before status existed,
    # and runs read without any manifests, are "finished"); "not trained" when other runs' manifests are given but
    # not this run's
    status: str = "finished"
    status_reason: str | None = None
    diverged_at_step: int | None = None

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def is_base(self) -> bool:
        return self.sweep_factor is None

    @property
    def equivariant(self) -> bool:
        return self.equivariance not in ("none", "unknown")

    @property
    def model_label(self) -> str:
        kind = "augmented" if not self.equivariant else f"{self.equivariance}-equivariant"
        return f"{self.family} ({kind})"


def read_runs(run_paths: Sequence[str | Path], manifest_paths: Sequence[str | Path] = ()) -> dict[str, RunInfo]:
    """RunInfo by run name from run.json files and (matched by their ``run`` key) manifest.json files."""
    manifests: dict[str, dict[str, Any]] = {}
    for path in manifest_paths:
        manifest = json.loads(Path(path).read_text())
        manifests[manifest["run"]] = manifest
    runs = {}
    for path in run_paths:
        run = json.loads(Path(path).read_text())
        manifest = manifests.get(run["name"], {})
        sweep = run.get("sweep") or {}
        training = run.get("training", {})
        runs[run["name"]] = RunInfo(
            name=run["name"],
            task=run["task"],
            base_run=run.get("base_run", run["name"]),
            family=run["model"]["family"],
            size=run["model"]["size"],
            seed=int(training.get("seed", 0)),
            optimizer=str(training.get("optimizer", "")),
            sweep_factor=sweep.get("factor"),
            sweep_value=sweep.get("value"),
            equivariance=manifest.get("equivariance", "unknown"),
            parameters=manifest.get("parameters"),
            train_molecules=manifest.get("train_molecules"),
            checkpoint_steps=tuple(run.get("checkpoint_steps", ())),
            num_train_molecules=training.get("num_train_molecules"),
            # given manifests but none for this run: it has not trained (its training failed or has not run)
            status=str(manifest.get("status", "finished")) if manifest or not manifest_paths else NOT_TRAINED,
            status_reason=manifest.get("status_reason"),
            diverged_at_step=manifest.get("diverged_at_step"),
        )
    missing = [name for name in manifests if name not in runs]
    if missing:
        raise ValueError(f"manifests given for runs without run.json: {missing}")
    return runs


def read_csvs(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = [pd.read_csv(path, keep_default_na=True) for path in paths]
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def read_decomposition_parts(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The rows of each output part (e.g. a force field's energy and forces) other than their sum "all", over all
    t: run, step, part, quantity, value, stderr. Empty for tasks with one output."""
    table = read_csvs(paths)
    if table.empty or "part" not in table:
        return pd.DataFrame(columns=["run", "step", "part", "quantity", "value", "stderr"])
    # the parts of a (run, quantity) are its rows beside an "all" row (a one-part output has its own part, no sum)
    table = table[table["t_bin"].astype(str) == "all"]
    has_sum = table.groupby(["run", "quantity"])["part"].transform(lambda parts: (parts == "all").any())
    rows = table[has_sum.astype(bool) & (table["part"] != "all")].copy()
    for column in ("value", "stderr", "step"):
        rows[column] = pd.to_numeric(rows[column], errors="coerce")
    return rows[["run", "step", "part", "quantity", "value", "stderr"]].reset_index(drop=True)


def read_decomposition(paths: Iterable[str | Path]) -> pd.DataFrame:
    """All decomposition tables, with one output part per (run, quantity): "all" when present, else the only one."""
    table = read_csvs(paths)
    if table.empty:
        return table
    table["t_bin"] = table["t_bin"].astype(str)
    table["k"] = pd.to_numeric(table["k"], errors="coerce")
    for column in ("value", "stderr", "step"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    keep = []
    for (_run, _quantity), group in table.groupby(["run", "quantity"], sort=False):
        parts = group["part"].unique()
        if "all" in parts:
            keep.append(group[group["part"] == "all"])
        elif len(parts) == 1:
            keep.append(group)
        else:
            raise ValueError(f"run {_run}, {_quantity}: several output parts {sorted(parts)} and no 'all'")
    return pd.concat(keep, ignore_index=True)


def series(table: pd.DataFrame, run: str, quantity: str, t_bin: str = "all", k: float | None = None) -> pd.DataFrame:
    """Rows step, value, stderr of one run and quantity, by step."""
    if table.empty:
        return pd.DataFrame(columns=["step", "value", "stderr"])
    rows = table[(table["run"] == run) & (table["quantity"] == quantity)]
    if "t_bin" in rows:
        rows = rows[rows["t_bin"] == t_bin]
    if k is not None:
        rows = rows[rows["k"] == k]
    out = rows[["step", "value", "stderr"]].sort_values("step").reset_index(drop=True)
    if out["step"].duplicated().any():
        raise ValueError(f"run {run}, {quantity}: several rows per step (t_bin={t_bin}, k={k})")
    return out


def runs_of_table(table: pd.DataFrame) -> list[str]:
    return [] if table.empty else list(dict.fromkeys(table["run"]))


def seed_group(runs: dict[str, RunInfo], base: str) -> list[RunInfo]:
    """A base run and its seed sweeps."""
    return [runs[base]] + [r for r in runs.values() if r.base_run == base and r.sweep_factor == "seed"]


def aggregate_seeds(curves: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Steps common to every curve: the mean over seeds with its band.

    One curve: value +- 1.96 SE (the run's own standard error over examples). Two or more: the mean over seeds with
    the min-max band over seeds (the spread between runs, which includes the evaluation noise of each)."""
    if len(curves) == 1:
        curve = curves[0]
        half = Z95 * curve["stderr"].to_numpy(dtype=float)
        return pd.DataFrame(
            {
                "step": curve["step"],
                "value": curve["value"],
                "low": curve["value"] - half,
                "high": curve["value"] + half,
            }
        )
    steps = sorted(set.intersection(*(set(c["step"]) for c in curves)))
    values = np.array([[c.set_index("step").loc[s, "value"] for s in steps] for c in curves], dtype=float)
    return pd.DataFrame(
        {"step": steps, "value": values.mean(axis=0), "low": values.min(axis=0), "high": values.max(axis=0)}
    )


def base_runs_by_task(runs: dict[str, RunInfo]) -> dict[str, list[RunInfo]]:
    """Base runs per task, the augmented (non-equivariant) ones first."""
    out: dict[str, list[RunInfo]] = {}
    for run in sorted(runs.values(), key=lambda r: (r.task, r.equivariant, r.name)):
        if run.is_base:
            out.setdefault(run.task, []).append(run)
    return out


def human_count(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "?"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.0f}"


def constant_losses(baselines: pd.DataFrame | None) -> dict[str, float]:
    """Task -> held-out loss of its best constant model (the "all" row, or the only part's), from the tables of
    :mod:`eqdyn.analysis.baseline_loss`."""
    if baselines is None or baselines.empty:
        return {}
    losses = {}
    for task, rows in baselines.groupby("task"):
        chosen = rows[rows["part"] == "all"] if (rows["part"] == "all").any() else rows
        if len(chosen) != 1:
            raise ValueError(f"baseline table of {task}: expected one 'all' row or one part, got {list(rows['part'])}")
        losses[str(task)] = float(chosen["value"].iloc[0])
    return losses
