"""Per-task datasets: gather the shards, split by molecule, write ``datasets/{task}/{split}.npz`` + manifests.

Split: the molecules that have conformers and labels are permuted with a seed derived from the master seed and
cut by the ``data.split`` fractions (train/val/test counts rounded, test takes the rest). The same molecule split
is used by all three tasks, and no molecule is in two splits. Within a split, examples are sorted by example_id.

Dataset .npz format (the interface of the training code; N = largest molecule of the task, E = most bonds):

- ``positions`` float32 [M, N, 3] Å, each example centred at the unweighted centroid of its real atoms; padding 0.
- ``atomic_numbers`` int64 [M, N], 0 = padding; ``mask`` bool [M, N]. Hydrogens are explicit in every task.
- ``bonds`` int64 [M, E, 3]: rows (i, j, order) with i < j, order 1/2/3 or 4 = aromatic; padding rows -1.
- ``molecule_id``, ``conformer_id`` (index within the molecule), ``example_id`` int64 [M], with
  example_id = molecule_id * 1_000_000 + conformer_id * 1_000 + geometry_id, geometry_id 0 for the
  MMFF-minimised conformer (flow_matching, voxel_denoising) and 1..G for its perturbed copies (force_field).
- force_field also: ``energy`` float64 [M] kcal/mol (raw labeller energy), ``energy_reference`` float64 [M]
  kcal/mol (lowest labeller energy of the molecule's unperturbed MMFF minima; train on energy - energy_reference),
  ``forces`` float32 [M, N, 3] kcal/mol/Å.
- DFT sources (``rmd17_download``, ``spice_download``): force_field holds the provider's geometries and labels
  (:mod:`eqdyn.data.dft_labels`; ``conformer_id`` = the provider's frame index, example_id = molecule_id * 1_000_000
  + frame), and ``energy_reference`` = sum over atoms of per-element energies fitted by least squares on the train
  split only. rMD17 keeps its official train/test frames (val drawn from the train frames, seeded); SPICE is split
  by molecule like every source. With ``geom_drugs_download`` flow_matching holds GEOM's own conformers
  (:mod:`eqdyn.data.geom_conformers`) instead of re-embedded ones.
- voxel_denoising: the flow_matching arrays restricted to molecules whose every conformer fits, with a margin of
  2 * atom_sigma, inside the ball inscribed in the grid: max |x - centroid| + 2 sigma <= grid_size * resolution / 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem

from eqdyn.data.acquire import read_duplicates, read_molecules
from eqdyn.data.common import (
    CHARGED,
    CONFORMER_STRIDE,
    DISALLOWED_ELEMENT,
    MOLECULE_STRIDE,
    PARSE_FAILED,
    RADICAL,
    SKIP_REASONS,
    SKIPPED_COLUMNS,
    TOO_LARGE,
    DataConfigError,
    derive_seed,
    example_id,
    load_data_config,
    log,
    net_charge,
    quiet_rdkit,
    radical_electrons,
)
from eqdyn.data.dft_labels import (
    LEVEL_OF_THEORY,
    TEST,
    TRAIN,
    MissingReference,
    fit_element_references,
    reference_energies,
)
from eqdyn.data.labels import ENERGY_UNIT, FORCE_UNIT
from eqdyn.io import atomic_open, save_npz, sha256_file, write_json
from eqdyn.provenance import provenance_record

TASKS = ("flow_matching", "force_field", "voxel_denoising")
SPLITS = ("train", "val", "test")
BOLTZMANN_KCAL_PER_MOL_K = 0.0019872042586  # CODATA 2018 R in kcal/(mol K)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as handle:
        return {key: handle[key] for key in handle.files}


def concat_padded(arrays: list[np.ndarray], fill: float | int) -> np.ndarray:
    """Concatenate along axis 0 arrays whose axis 1 (atoms or bonds) differs, padding axis 1 with ``fill``."""
    width = max((a.shape[1] for a in arrays), default=0)
    padded = []
    for array in arrays:
        pad = [(0, 0)] * array.ndim
        pad[1] = (0, width - array.shape[1])
        padded.append(np.pad(array, pad, constant_values=fill))
    return np.concatenate(padded, axis=0)


def gather(shards: list[dict[str, np.ndarray]], padded: dict[str, float | int], keys: list[str]) -> dict:
    out = {}
    for key in keys:
        parts = [shard[key] for shard in shards]
        out[key] = concat_padded(parts, padded[key]) if key in padded else np.concatenate(parts, axis=0)
    return out


def split_molecules(molecule_ids: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Disjoint, seeded split of molecule ids (sizes are checked per task by :func:`check_splits`)."""
    ids = np.sort(np.unique(molecule_ids))
    order = np.random.default_rng(derive_seed(seed, "split", 0)).permutation(len(ids))
    n_train = round(fractions["train"] * len(ids))
    n_val = round(fractions["val"] * len(ids))
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(ids))}
    return {name: np.sort(ids[order[start:stop]]) for name, (start, stop) in bounds.items()}


class SplitTooSmall(DataConfigError):
    """A task's split below what training or the held-out evaluation needs; the message names task, split, cause."""


def split_minimums(config: dict[str, Any]) -> dict[str, tuple[int, str, str]]:
    """Per split: (minimum count, unit, why)."""
    minimums = {
        "train": (1, "molecules", "training needs a molecule"),
        "test": (
            config.get("min_test_examples", 2),
            "examples",
            "data.min_test_examples: the held-out evaluation reports standard errors over test examples",
        ),
    }
    if config["split"]["val"] > 0:
        minimums["val"] = (1, "examples", "data.split.val > 0 asks for a validation split")
    return minimums


def _skip_advice(reason: str, count: int, skipped: pd.DataFrame, config: dict[str, Any]) -> str:
    details = skipped.loc[skipped["reason"] == reason, "detail"].astype(str)
    if reason == DISALLOWED_ELEMENT:
        found = sorted({symbol for detail in details for symbol in detail.split(",") if symbol})
        return f"{count} disallowed_element ({', '.join(found)}: add them to data.elements if MMFF94 covers them)"
    if reason == TOO_LARGE:
        sizes = [int(detail.split()[0]) for detail in details if detail.split() and detail.split()[0].isdigit()]
        largest = f", up to {max(sizes)} heavy atoms" if sizes else ""
        return f"{count} too_large (> data.max_heavy_atoms = {config['max_heavy_atoms']}{largest}: raise it)"
    if reason == CHARGED:
        return f"{count} charged (set data.charged_molecules: keep to keep them)"
    if reason == RADICAL:
        return f"{count} radical (set data.radicals: keep to keep them)"
    if reason == PARSE_FAILED:
        return f"{count} parse_failed (SMILES RDKit cannot read; see data/skipped.csv)"
    return f"{count} {reason} (see data/skipped.csv)"


def describe_losses(
    config: dict[str, Any], summary: dict[str, Any], skipped: pd.DataFrame, voxel_fit: dict[str, Any] | None
) -> tuple[str, bool]:
    """Where the molecules went (largest losses first, each with its remedy), and whether losses dominate."""
    drawn = summary["total_attempted"] + summary.get("duplicates_removed", 0)
    losses = [
        (count, _skip_advice(reason, count, skipped, config))
        for reason, count in summary["skipped_by_reason"].items()
        if count
    ]
    if summary.get("duplicates_removed"):
        count = summary["duplicates_removed"]
        losses.append((count, f"{count} duplicates (same canonical SMILES as a molecule already drawn)"))
    if voxel_fit is not None and voxel_fit["molecules_dropped"]:
        count = voxel_fit["molecules_dropped"]
        losses.append(
            (
                count,
                f"{count} outside the voxel ball (radius {voxel_fit['max_radius_angstrom']:g} Å = grid_size * "
                "resolution / 2 - 2 atom_sigma: raise data.voxel.grid_size or data.voxel.resolution_angstrom)",
            )
        )
    losses.sort(key=lambda loss: -loss[0])
    lost = sum(count for count, _ in losses)
    text = "; ".join(advice for _, advice in losses[:4]) if losses else "none"
    return f"{drawn} molecules drawn, {lost} lost: {text}", lost * 2 > max(drawn, 1)


def check_splits(
    datasets: dict[str, dict[str, dict[str, np.ndarray]]],
    config: dict[str, Any],
    summary: dict[str, Any],
    skipped: pd.DataFrame,
    voxel_fit: dict[str, Any] | None,
) -> None:
    """Fail if any task's split is empty or below what training and the evaluation need, saying why and what to do."""
    minimums = split_minimums(config)
    problems = []
    for task, splits in datasets.items():
        counts = {
            name: {"molecules": len(np.unique(arrays["molecule_id"])), "examples": len(arrays["molecule_id"])}
            for name, arrays in splits.items()
        }
        for name, (minimum, unit, why) in minimums.items():
            if counts[name][unit] < minimum:
                table = ", ".join(
                    f"{split} {c['molecules']} molecules/{c['examples']} examples" for split, c in counts.items()
                )
                problems.append(
                    (
                        task,
                        f"{task}: the {name} split has {counts[name][unit]} {unit}, at least {minimum} needed "
                        f"({why}); {table}",
                    )
                )
    if not problems:
        return
    task_losses = {}
    for task in sorted({task for task, _ in problems}):
        fit = voxel_fit if task == "voxel_denoising" else None
        task_losses[task] = describe_losses(config, summary, skipped, fit)
    dominated = any(dominant for _, dominant in task_losses.values())
    if dominated:
        remedy = "the filters above removed most molecules: change them (raising data.max_molecules draws more of "
        remedy += "the same kind)"
    else:
        remedy = "few molecules were lost: raise data.max_molecules (or the split's fraction in data.split)"
    lines = [problem for _, problem in problems]
    lines += [f"{task}: {losses}" for task, (losses, _) in task_losses.items()]
    raise SplitTooSmall(
        "data stage stopped: a split is too small.\n  " + "\n  ".join(lines) + f"\n  What to do: {remedy}. "
        "The skip summary is in data/skipped_summary.json (also kept as logs/data/skipped_summary.json) and "
        "data/skipped.csv lists every skipped molecule."
    )


def centred(positions: np.ndarray, mask: np.ndarray) -> np.ndarray:
    counts = mask.sum(axis=1, keepdims=True)
    centroid = (positions * mask[..., None]).sum(axis=1) / np.maximum(counts, 1)
    return (positions - centroid[:, None, :]) * mask[..., None]


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    """Hash of array names, dtypes, shapes and bytes: stable across reruns (the zip file's timestamps are not)."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def select(arrays: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[rows] for key, value in arrays.items()}


def trim(arrays: dict[str, np.ndarray], n_max: int, e_max: int) -> dict[str, np.ndarray]:
    out = dict(arrays)
    for key in ("positions", "atomic_numbers", "mask", "forces"):
        if key in out:
            out[key] = out[key][:, :n_max]
    out["bonds"] = out["bonds"][:, :e_max]
    return out


def task_arrays(source: dict[str, np.ndarray], geometry_id: np.ndarray, with_labels: bool) -> dict[str, np.ndarray]:
    mask = source["mask"].astype(bool)
    arrays: dict[str, np.ndarray] = {
        "positions": centred(source["positions"], mask).astype(np.float32),
        "atomic_numbers": np.where(mask, source["atomic_numbers"], 0).astype(np.int64),
        "mask": mask,
        "bonds": source["bonds"].astype(np.int64),
        "molecule_id": source["molecule_id"].astype(np.int64),
        "conformer_id": source["conformer_id"].astype(np.int64),
        "example_id": example_id(source["molecule_id"], source["conformer_id"], geometry_id),
    }
    if with_labels:
        arrays["energy"] = source["energy"].astype(np.float64)
        arrays["energy_reference"] = source["energy_reference"].astype(np.float64)
        arrays["forces"] = (source["forces"] * mask[..., None]).astype(np.float32)
    return arrays


def fits_in_ball(positions: np.ndarray, mask: np.ndarray, radius: float) -> np.ndarray:
    """Per example: does every real atom lie within ``radius`` of the centroid?"""
    distance = np.linalg.norm(centred(positions, mask), axis=-1)
    return np.where(mask, distance, 0.0).max(axis=1, initial=0.0) <= radius


def force_field_statistics(labels: dict[str, np.ndarray]) -> dict[str, Any]:
    """RMS forces and energy spread of the labelled geometries (to show they are not near-equilibrium)."""
    mask = labels["mask"].astype(bool)
    force_norm_sq = (labels["forces"] ** 2).sum(-1)[mask]
    minimum_mask = np.any(labels["minimum_forces"] != 0, axis=-1)
    minimum_sq = (labels["minimum_forces"] ** 2).sum(-1)[minimum_mask]
    table = pd.DataFrame(
        {
            "molecule_id": labels["molecule_id"],
            "energy": labels["energy"],
            "above_conformer_minimum": labels["energy"] - labels["conformer_minimum_energy"],
            "n_atoms": mask.sum(1),
        }
    )
    deviation = table["energy"] - table.groupby("molecule_id")["energy"].transform("mean")
    per_molecule_std = table.groupby("molecule_id")["energy"].std(ddof=0)
    modes = np.maximum(3 * table["n_atoms"] - 6, 1)
    temperature = 2 * table["above_conformer_minimum"] / (modes * BOLTZMANN_KCAL_PER_MOL_K)
    return {
        "rms_force": float(np.sqrt(force_norm_sq.mean())) if force_norm_sq.size else None,
        "rms_force_at_unperturbed_minima": float(np.sqrt(minimum_sq.mean())) if minimum_sq.size else 0.0,
        "rms_force_definition": "sqrt(mean over real atoms of |F_i|^2)",
        "energy_spread_overall": float(deviation.std(ddof=0)),
        "energy_spread_per_molecule_mean": float(per_molecule_std.mean()),
        "energy_spread_per_molecule_median": float(per_molecule_std.median()),
        "energy_spread_definition": (
            "std of energy - (that molecule's mean energy): overall over all geometries, and per molecule "
            "(then mean/median over molecules)"
        ),
        "mean_energy_above_reference": float((labels["energy"] - labels["energy_reference"]).mean()),
        "mean_energy_above_own_conformer_minimum": float(table["above_conformer_minimum"].mean()),
        "equipartition_temperature_kelvin_mean": float(temperature.mean()),
        "equipartition_temperature_definition": "2 (E - E_own_minimum) / ((3N - 6) k_B), averaged over geometries",
    }


def describe(arrays_by_split: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    all_numbers = np.concatenate([a["atomic_numbers"][a["mask"]] for a in arrays_by_split.values()])
    per_molecule_atoms = {}
    for arrays in arrays_by_split.values():
        for molecule_id, count in zip(arrays["molecule_id"], arrays["mask"].sum(1), strict=True):
            per_molecule_atoms[int(molecule_id)] = int(count)
    counts = np.asarray(list(per_molecule_atoms.values()) or [0])
    table = Chem.GetPeriodicTable()
    numbers = sorted(int(z) for z in np.unique(all_numbers))
    return {
        "counts": {
            name: {"molecules": len(np.unique(a["molecule_id"])), "examples": len(a["molecule_id"])}
            for name, a in arrays_by_split.items()
        },
        "elements": [table.GetElementSymbol(z) for z in numbers],
        "atomic_numbers": numbers,
        "atoms_per_molecule": {"min": int(counts.min()), "mean": float(counts.mean()), "max": int(counts.max())},
    }


def dft_rows_by_split(
    arrays: dict[str, np.ndarray], molecule_split: dict[str, np.ndarray], config: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Rows of each split: the provider's official train/test frames where it has them (val drawn from train)."""
    official = arrays["official_split"]
    if not (official >= 0).any():
        return {name: np.flatnonzero(np.isin(arrays["molecule_id"], ids)) for name, ids in molecule_split.items()}
    candidates = np.flatnonzero(official == TRAIN)
    fractions = config["split"]
    val_fraction = fractions["val"] / max(fractions["train"] + fractions["val"], 1e-12)
    order = np.random.default_rng(derive_seed(config["seed"], "dft_val", 0)).permutation(len(candidates))
    n_val = round(val_fraction * len(candidates))
    return {
        "train": np.sort(candidates[order[n_val:]]),
        "val": np.sort(candidates[order[:n_val]]),
        "test": np.flatnonzero(official == TEST),
    }


def fit_dft_references(splits: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Fit per-element references on the train split and write energy_reference into every split."""
    train = splits["train"]
    if not len(train["energy"]):
        return {"element_references_kcal_per_mol": {}, "energy_reference": "not fitted: empty train split"}
    references = fit_element_references(train["atomic_numbers"], train["energy"])
    for arrays in splits.values():
        arrays["energy_reference"] = reference_energies(arrays["atomic_numbers"], references)
    table = Chem.GetPeriodicTable()
    residual = train["energy"] - train["energy_reference"]
    mask = train["mask"]
    force_sq = (train["forces"].astype(np.float64) ** 2).sum(-1)[mask]
    return {
        "element_references_kcal_per_mol": {table.GetElementSymbol(z): e for z, e in references.items()},
        "energy_reference": (
            "sum over atoms of per-element energies fitted by least squares of energy on element counts over the "
            "train split only (held-out labels never enter the fit)"
        ),
        "train_residual_std": float(residual.std(ddof=0)) if residual.size else None,
        "rms_force": float(np.sqrt(force_sq.mean())) if force_sq.size else None,
        "rms_force_definition": "sqrt(mean over real atoms of |F_i|^2), train split",
    }


def build(
    config: dict[str, Any],
    molecules: pd.DataFrame,
    conformer_shards: list[dict[str, np.ndarray]],
    label_shards: list[dict[str, np.ndarray]],
    dft: dict[str, np.ndarray] | None = None,
    geom: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, dict[str, dict[str, np.ndarray]]], dict[str, dict[str, Any]]]:
    """All task datasets and the task-specific manifest entries (without file hashes).

    ``dft`` (dft_labels.npz) replaces the MMFF force-field set; ``geom`` (geom_conformers.npz) replaces the
    flow-matching conformers. The molecule split covers every molecule of any task, so it stays shared.
    """
    conformer_keys = ["positions", "atomic_numbers", "mask", "bonds", "molecule_id", "conformer_id"]
    label_keys = [*conformer_keys, "geometry_id", "energy", "energy_reference", "forces"]
    padded = {"positions": 0.0, "atomic_numbers": 0, "mask": False, "bonds": -1, "forces": 0.0, "minimum_forces": 0.0}
    conformers = gather(conformer_shards, padded, conformer_keys)
    labels = gather(label_shards, padded, label_keys)
    # Diagnostics only, with their own row counts (per geometry / per conformer): kept out of the task arrays.
    diagnostics = gather(label_shards, padded, ["conformer_minimum_energy", "minimum_forces"])

    usable = np.unique(labels["molecule_id"])
    if not np.isin(usable, conformers["molecule_id"]).all():
        raise RuntimeError("labelled molecules without conformers: the shards are inconsistent")
    split_ids = usable
    for external in (dft, geom):
        if external is not None:
            split_ids = np.union1d(split_ids, external["molecule_id"])
    split = split_molecules(split_ids, config["split"], config["seed"])

    conformer_ok = np.isin(conformers["molecule_id"], usable)
    voxel = config["voxel"]
    half_side = voxel["grid_size"] * voxel["resolution_angstrom"] / 2
    radius_limit = half_side - 2 * voxel["atom_sigma_angstrom"]
    fits = fits_in_ball(conformers["positions"], conformers["mask"].astype(bool), radius_limit)
    too_big = np.unique(conformers["molecule_id"][conformer_ok & ~fits])

    sources = {
        "flow_matching": (conformers, conformer_ok, np.zeros(len(conformers["molecule_id"]), np.int64), False),
        "force_field": (labels, np.ones(len(labels["molecule_id"]), bool), labels["geometry_id"], True),
        "voxel_denoising": (
            conformers,
            conformer_ok & ~np.isin(conformers["molecule_id"], too_big),
            np.zeros(len(conformers["molecule_id"]), np.int64),
            False,
        ),
    }
    if geom is not None:
        count = len(geom["molecule_id"])
        sources["flow_matching"] = (geom, np.ones(count, bool), np.zeros(count, np.int64), False)
    if dft is not None:
        count = len(dft["energy"])
        dft_source = {**dft, "energy_reference": np.zeros(count)}  # fitted below, on train only
        sources["force_field"] = (dft_source, np.ones(count, bool), np.zeros(count, np.int64), True)
    datasets: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    extras: dict[str, dict[str, Any]] = {}
    for task, (source, keep, geometry_id, with_labels) in sources.items():
        arrays = task_arrays(select(source, keep), geometry_id[keep], with_labels)
        n_max = int(arrays["mask"].sum(1).max(initial=0))
        e_max = int((arrays["bonds"][..., 0] >= 0).sum(1).max(initial=0))
        arrays = trim(arrays, n_max, e_max)
        by_molecule = {name: np.flatnonzero(np.isin(arrays["molecule_id"], split[name])) for name in SPLITS}
        if task == "force_field" and dft is not None:
            # The provider's frame index is the conformer id: example_id = molecule * stride + frame.
            arrays["example_id"] = arrays["molecule_id"] * MOLECULE_STRIDE + arrays["conformer_id"]
            by_molecule = dft_rows_by_split({**arrays, "official_split": dft["official_split"][keep]}, split, config)
        datasets[task] = {}
        for name in SPLITS:
            rows = by_molecule[name]
            rows = rows[np.argsort(arrays["example_id"][rows], kind="stable")]
            datasets[task][name] = select(arrays, rows)
        extras[task] = {"n_max": n_max, "e_max": e_max}
    if dft is not None:
        extras["force_field"]["labels"] = fit_dft_references(datasets["force_field"])
        extras["force_field"]["official_split"] = bool((dft["official_split"] >= 0).any())
    else:
        extras["force_field"]["labels"] = force_field_statistics({**labels, **diagnostics})
    extras["voxel_denoising"]["fit"] = {
        "criterion": "max |x - centroid| + 2 * atom_sigma <= grid_size * resolution / 2 for every conformer",
        "half_side_angstrom": half_side,
        "max_radius_angstrom": radius_limit,
        "molecules_dropped": len(too_big),
        "examples_dropped": int((conformer_ok & np.isin(conformers["molecule_id"], too_big)).sum()),
        "molecules_considered": len(usable),
    }
    return datasets, extras


def kept_charge_counts(molecules: pd.DataFrame, kept_ids: np.ndarray) -> dict[str, int]:
    """Kept molecules with a net charge / with radical electrons (non-zero only if the config keeps them)."""
    quiet_rdkit()
    charged = radicals = 0
    for smiles in molecules.loc[molecules["molecule_id"].isin(kept_ids), "smiles"]:
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            continue
        charged += net_charge(mol) != 0
        radicals += radical_electrons(mol) > 0
    return {"kept_charged": int(charged), "kept_radicals": int(radicals)}


def skipped_summary(conformer_shards: list[dict], skipped: pd.DataFrame, kept: int, molecules: int) -> dict:
    attempted = int(sum(int(shard["molecules_attempted"]) for shard in conformer_shards))
    by_reason = {reason: int((skipped["reason"] == reason).sum()) for reason in SKIP_REASONS}
    unknown = sorted(set(skipped["reason"]) - set(SKIP_REASONS))
    if unknown:
        raise RuntimeError(f"unknown skip reasons {unknown}")
    if attempted != molecules or kept + len(skipped) != attempted:
        raise RuntimeError(
            f"molecule bookkeeping does not add up: {molecules} acquired, {attempted} attempted, {kept} kept, "
            f"{len(skipped)} skipped"
        )
    not_converged = int(sum(int(shard["conformers_not_converged"]) for shard in conformer_shards))
    not_embedded = int(sum(int(shard["conformers_not_embedded"]) for shard in conformer_shards))
    return {
        "total_attempted": attempted,
        "total_kept": kept,
        "total_skipped": len(skipped),
        "skipped_by_reason": by_reason,
        "conformers_dropped_not_converged": not_converged,
        "conformers_not_embedded": not_embedded,
        "unit": "molecules; the conformers_* entries count missing conformers of kept molecules",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--molecules", required=True, type=Path)
    parser.add_argument("--conformers", required=True, nargs="+", type=Path, help="conformer shard .npz files")
    parser.add_argument("--labels", required=True, nargs="+", type=Path, help="label shard .npz files")
    parser.add_argument("--skipped", required=True, nargs="+", type=Path, help="skipped CSVs of all shards/steps")
    parser.add_argument("--upstream-provenance", nargs="*", default=[], type=Path)
    parser.add_argument("--out-dir", required=True, type=Path, help="datasets folder (results/<study>/datasets)")
    parser.add_argument("--data-dir", required=True, type=Path, help="for skipped.csv and skipped_summary.json")
    parser.add_argument("--duplicates", type=Path, help="duplicates.csv of the acquisition step")
    parser.add_argument(
        "--summary-log", type=Path, help="copy of skipped_summary.json outside the declared outputs (kept on failure)"
    )
    parser.add_argument("--dft-labels", nargs="*", default=[], type=Path, help="dft_labels.npz (DFT sources only)")
    parser.add_argument("--geom-conformers", nargs="*", default=[], type=Path, help="geom_conformers.npz (GEOM only)")
    args = parser.parse_args(argv)

    config = load_data_config(args.config)
    molecules = read_molecules(args.molecules)
    duplicates = read_duplicates(args.duplicates) if args.duplicates else pd.DataFrame()
    conformer_shards = [load_npz(path) for path in args.conformers]
    label_shards = [load_npz(path) for path in args.labels]
    skipped = pd.concat(
        [pd.read_csv(path, dtype={"smiles": str, "detail": str}, keep_default_na=False) for path in args.skipped],
        ignore_index=True,
    ).sort_values("molecule_id", kind="stable")

    # The skip summary is written before anything can fail on small splits: it is what explains such a failure.
    kept_ids = np.unique(np.concatenate([s["molecule_id"] for s in label_shards]))
    summary = skipped_summary(conformer_shards, skipped, len(kept_ids), len(molecules))
    summary = {
        **summary,
        "duplicates_removed": len(duplicates),
        "duplicates_unit": "further copies (same canonical SMILES) passed over while drawing; see data/duplicates.csv",
        **kept_charge_counts(molecules, kept_ids),
        "charged_molecules": config.get("charged_molecules", "skip"),
        "radicals": config.get("radicals", "skip"),
    }
    with atomic_open(args.data_dir / "skipped.csv") as handle:
        skipped[list(SKIPPED_COLUMNS)].to_csv(handle, index=False, lineterminator="\n")
    write_json(args.data_dir / "skipped_summary.json", summary)
    if args.summary_log:
        write_json(args.summary_log, summary)
    log(
        f"molecules: {summary['total_attempted']} attempted, {len(kept_ids)} kept, {len(duplicates)} duplicates "
        f"passed over; skipped {summary['skipped_by_reason']}"
    )

    if len(kept_ids) == 0:
        losses, _ = describe_losses(config, summary, skipped, None)
        raise SystemExit(f"data stage stopped: no molecule survived the data stage ({losses})")
    dft = load_npz(args.dft_labels[0]) if args.dft_labels else None
    geom = load_npz(args.geom_conformers[0]) if args.geom_conformers else None
    try:
        datasets, extras = build(config, molecules, conformer_shards, label_shards, dft=dft, geom=geom)
    except MissingReference as error:
        raise SystemExit(f"data stage stopped: {error}") from None
    try:
        check_splits(datasets, config, summary, skipped, extras["voxel_denoising"]["fit"])
    except SplitTooSmall as error:
        raise SystemExit(str(error)) from None  # a message in the rule's log, not a traceback

    molecule_counts = {
        key: summary[key]
        for key in ("duplicates_removed", "kept_charged", "kept_radicals", "charged_molecules", "radicals")
    }
    sources = sorted(set(molecules["source"]))
    for task in TASKS:
        files = {}
        for name in SPLITS:
            path = args.out_dir / task / f"{name}.npz"
            save_npz(path, **datasets[task][name])
            files[name] = {
                "path": path.name,
                "file_sha256": sha256_file(path),
                "content_sha256": content_sha256(datasets[task][name]),
            }
        first = datasets[task]["train"]
        manifest = {
            "task": task,
            "source": sources,
            **describe(datasets[task]),
            "molecules": molecule_counts,
            "padding": {"n_max": extras[task]["n_max"], "e_max": extras[task]["e_max"]},
            "files": files,
            "arrays": {
                key: {"dtype": value.dtype.str, "shape_tail": list(value.shape[1:])} for key, value in first.items()
            },
            "units": {"positions": "Å", "energy": ENERGY_UNIT, "forces": FORCE_UNIT},
            "hydrogens": "explicit in every example (forces act on every atom)",
            "centring": "each example centred at the unweighted centroid of its real atoms",
            "example_id": (
                f"molecule_id * {MOLECULE_STRIDE} + conformer_id * {CONFORMER_STRIDE} + geometry_id "
                "(geometry 0 = MMFF minimum, 1..G = perturbed copies)"
            ),
            "split": {
                "by": "molecule (a molecule's conformers all go to the same split; same split for all tasks)",
                "seed": derive_seed(config["seed"], "split", 0),
                "fractions": config["split"],
            },
            "config": config,
        }
        if task == "force_field" and dft is not None:
            manifest["labels"] = {
                "labeler": LEVEL_OF_THEORY[config["source"]],
                "energy": "the provider's total energy converted to kcal/mol",
                **extras["force_field"]["labels"],
            }
            manifest["example_id"] = f"molecule_id * {MOLECULE_STRIDE} + conformer_id (the provider's frame index)"
            if extras["force_field"]["official_split"]:
                manifest["split"] = {
                    "by": "the provider's official train/test frames (every molecule in every split); val drawn "
                    "from the official train frames with the seed below",
                    "seed": derive_seed(config["seed"], "dft_val", 0),
                    "rmd17_split_index": config.get("rmd17", {}).get("split_index", 1),
                    "fractions": config["split"],
                }
        elif task == "force_field":
            manifest["labels"] = {
                "labeler": config["force_field"]["labeler"],
                "perturbation_angstrom": config["force_field"]["perturbation_angstrom"],
                "geometries_per_conformer": config["force_field"]["geometries_per_conformer"],
                "energy": "raw labeller energy (kcal/mol)",
                "energy_reference": "lowest labeller energy of the molecule's unperturbed MMFF minima (kcal/mol)",
                **extras["force_field"]["labels"],
            }
        if task == "flow_matching" and geom is not None:
            manifest["conformers"] = "GEOM's own conformers (rdkit_folder pickles), largest Boltzmann weights first"
        if task == "voxel_denoising":
            manifest["voxel"] = {**config["voxel"], **extras["voxel_denoising"]["fit"]}
        write_json(args.out_dir / task / "manifest.json", manifest)
        log(f"{task}: {manifest['counts']}")

    record = provenance_record({"step": "data.datasets", "data": config})
    record["upstream"] = {}
    for path in args.upstream_provenance:
        with open(path) as handle:
            record["upstream"][path.name] = json.load(handle)
    write_json(args.out_dir / "provenance.json", record)
    write_json(
        args.data_dir / "provenance" / "datasets.json", provenance_record({"step": "data.datasets", "data": config})
    )


if __name__ == "__main__":
    main()
