"""Force labels of one shard: energies and forces on perturbed (off-equilibrium) conformers.

Each MMFF-minimised conformer of the shard gets ``geometries_per_conformer`` copies displaced by isotropic
Gaussian noise of standard deviation ``perturbation_angstrom`` per atom and axis (seeded by (master seed,
molecule_id)); each copy is labelled with

- ``mmff`` (default): RDKit MMFF94 energy and analytic gradient, forces = -gradient;
- ``xtb``: GFN2-xTB single points through tblite (optional dependency, imported only when chosen).

Units: energies kcal/mol, forces kcal/mol/Å (xtb's Hartree and Hartree/Bohr are converted).
``energy_reference`` is the lowest labeller energy among the molecule's unperturbed MMFF-minimised conformers
(for MMFF: the molecule's MMFF minimum), so ``energy - energy_reference`` is a per-molecule relative energy.

Shard file, one row per labelled geometry: ``positions`` float64 [K, N, 3] Å (not centred), ``atomic_numbers``,
``mask``, ``bonds`` (as in the conformer shard), ``molecule_id``/``conformer_id``/``geometry_id`` int64 [K]
(geometry 1..G), ``energy``/``energy_reference`` float64 [K], ``conformer_minimum_energy`` float64 [K]
(labeller energy at the unperturbed conformer the geometry came from), ``forces`` float64 [K, N, 3];
``minimum_forces``
float64 [C, N, 3] holds the forces at the unperturbed minima (a check that they are ~0).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

from eqdyn.data.common import (
    LABELER_FAILED,
    Skip,
    derive_seed,
    load_data_config,
    log,
    molecule_atomic_numbers,
    pad_stack,
    prepare_configured,
    quiet_rdkit,
    write_skipped_csv,
)
from eqdyn.io import save_npz
from eqdyn.provenance import write_provenance

HARTREE_TO_KCAL_PER_MOL = 627.5094740631  # CODATA 2018 Hartree energy / (kcal/mol)
BOHR_TO_ANGSTROM = 0.529177210903  # CODATA 2018
ENERGY_UNIT = "kcal/mol"
FORCE_UNIT = "kcal/mol/Å"

# (positions [N, 3] Å) -> (energy kcal/mol, forces [N, 3] kcal/mol/Å)
EnergyForces = Callable[[np.ndarray], tuple[float, np.ndarray]]


def mmff_labeler(mol: Chem.Mol) -> EnergyForces:
    """MMFF94 energy and forces of ``mol`` (explicit H) at any positions; raises if MMFF cannot type it."""
    properties = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94")
    if properties is None:
        raise ValueError("MMFF94 has no parameters for this molecule")
    if mol.GetNumConformers() == 0:
        # The force field is built on a conformer; positions are always passed explicitly below.
        mol = Chem.Mol(mol)
        mol.AddConformer(Chem.Conformer(mol.GetNumAtoms()), assignId=True)
    # nonBondedThresh is a distance cut-off for the non-bonded pair list built at construction time; a large
    # value keeps every pair, so the energy is the same function at every geometry.
    force_field = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, properties, nonBondedThresh=1000.0)

    def evaluate(positions: np.ndarray) -> tuple[float, np.ndarray]:
        flat = [float(x) for x in np.asarray(positions, dtype=np.float64).ravel()]
        energy = force_field.CalcEnergy(flat)
        gradient = np.asarray(force_field.CalcGrad(flat), dtype=np.float64).reshape(-1, 3)
        return float(energy), -gradient

    return evaluate


def xtb_labeler(mol: Chem.Mol) -> EnergyForces:
    """GFN2-xTB energy and forces via tblite, converted to kcal/mol and kcal/mol/Å."""
    try:
        from tblite.interface import Calculator
    except ImportError:
        raise SystemExit(
            "data.force_field.labeler = xtb needs the tblite Python package, which is not installed: "
            "pip install tblite (or choose labeler: mmff)"
        ) from None
    numbers = molecule_atomic_numbers(mol)
    charge = float(Chem.GetFormalCharge(mol))
    unpaired = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())

    def evaluate(positions: np.ndarray) -> tuple[float, np.ndarray]:
        bohr = np.asarray(positions, dtype=np.float64) / BOHR_TO_ANGSTROM
        calculator = Calculator("GFN2-xTB", numbers, bohr, charge=charge, uhf=unpaired)
        calculator.set("verbosity", 0)
        result = calculator.singlepoint()
        energy = float(result.get("energy")) * HARTREE_TO_KCAL_PER_MOL
        gradient = np.asarray(result.get("gradient"), dtype=np.float64) * (HARTREE_TO_KCAL_PER_MOL / BOHR_TO_ANGSTROM)
        return energy, -gradient

    return evaluate


LABELERS: dict[str, Callable[[Chem.Mol], EnergyForces]] = {"mmff": mmff_labeler, "xtb": xtb_labeler}


def label_shard(conformers: dict[str, np.ndarray], config: dict, progress_every: int = 25) -> tuple[dict, list]:
    """Labels for every conformer row of a conformer shard; returns (arrays, skipped rows)."""
    quiet_rdkit()
    settings = config["force_field"]
    make_labeler = LABELERS[settings["labeler"]]
    sigma = float(settings["perturbation_angstrom"])
    per_conformer = int(settings["geometries_per_conformer"])
    columns: dict[str, list] = {
        key: []
        for key in ("positions", "forces", "atomic_numbers", "bonds", "molecule_id", "conformer_id", "geometry_id")
    }
    energies: list[float] = []
    references: list[float] = []
    conformer_minima: list[float] = []
    minimum_forces: list[np.ndarray] = []
    skipped: list[tuple[int, str, str, str]] = []
    molecule_ids = np.unique(conformers["molecule_id"])
    started = time.monotonic()
    for done, molecule_id in enumerate(molecule_ids, start=1):
        rows = np.flatnonzero(conformers["molecule_id"] == molecule_id)
        smiles = str(conformers["smiles"][rows[0]])
        mol = prepare_configured(smiles, config)
        if isinstance(mol, Skip):
            raise RuntimeError(f"molecule {molecule_id} ({smiles}) passed the conformer step but now fails: {mol}")
        n_atoms = int(conformers["mask"][rows[0]].sum())
        numbers = conformers["atomic_numbers"][rows[0], :n_atoms]
        if not np.array_equal(numbers, molecule_atomic_numbers(mol)):
            raise RuntimeError(f"molecule {molecule_id}: atom order differs from the conformer shard")
        bonds = conformers["bonds"][rows[0]]
        bonds = bonds[bonds[:, 0] >= 0]
        rng = np.random.default_rng(derive_seed(config["seed"], "labels", int(molecule_id)))
        try:
            evaluate = make_labeler(mol)
            minima = [conformers["positions"][row, :n_atoms] for row in rows]
            at_minima = [evaluate(x) for x in minima]
            reference = min(energy for energy, _ in at_minima)
            labelled = []
            for row, x0, (minimum_energy, _) in zip(rows, minima, at_minima, strict=True):
                for geometry in range(1, per_conformer + 1):
                    x = x0 + rng.normal(0.0, sigma, size=x0.shape)
                    energy, forces = evaluate(x)
                    if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
                        raise FloatingPointError(f"non-finite label for conformer {conformers['conformer_id'][row]}")
                    labelled.append((int(conformers["conformer_id"][row]), geometry, x, energy, forces, minimum_energy))
        except (ValueError, RuntimeError, FloatingPointError) as error:
            skipped.append((int(molecule_id), smiles, LABELER_FAILED, f"{type(error).__name__}: {error}"))
            continue
        minimum_forces.extend(forces for _, forces in at_minima)
        for conformer_id, geometry, x, energy, forces, minimum_energy in labelled:
            columns["positions"].append(x)
            columns["forces"].append(forces)
            columns["atomic_numbers"].append(numbers)
            columns["bonds"].append(bonds)
            columns["molecule_id"].append(int(molecule_id))
            columns["conformer_id"].append(conformer_id)
            columns["geometry_id"].append(geometry)
            energies.append(energy)
            references.append(reference)
            conformer_minima.append(minimum_energy)
        if done % progress_every == 0 or done == len(molecule_ids):
            rate = len(energies) / (time.monotonic() - started)
            log(f"{done}/{len(molecule_ids)} molecules labelled, {len(energies)} geometries ({rate:.0f}/s)")

    n_max = max((len(z) for z in columns["atomic_numbers"]), default=0)
    e_max = max((len(b) for b in columns["bonds"]), default=0)
    atomic_numbers = pad_stack(columns["atomic_numbers"], n_max, 0, np.int64)
    arrays = {
        "positions": pad_stack(columns["positions"], n_max, 0.0, np.float64, (3,)),
        "forces": pad_stack(columns["forces"], n_max, 0.0, np.float64, (3,)),
        "atomic_numbers": atomic_numbers,
        "mask": atomic_numbers > 0,
        "bonds": pad_stack(columns["bonds"], e_max, -1, np.int64, (3,)),
        "molecule_id": np.asarray(columns["molecule_id"], dtype=np.int64),
        "conformer_id": np.asarray(columns["conformer_id"], dtype=np.int64),
        "geometry_id": np.asarray(columns["geometry_id"], dtype=np.int64),
        "energy": np.asarray(energies, dtype=np.float64),
        "energy_reference": np.asarray(references, dtype=np.float64),
        "conformer_minimum_energy": np.asarray(conformer_minima, dtype=np.float64),
        "minimum_forces": pad_stack(minimum_forces, n_max, 0.0, np.float64, (3,)),
    }
    return arrays, skipped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--conformers", required=True, type=Path, help="conformer shard .npz")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--skipped", required=True, type=Path)
    parser.add_argument("--provenance", required=True, type=Path)
    args = parser.parse_args(argv)

    config = load_data_config(args.config)
    with np.load(args.conformers) as handle:
        conformers = {key: handle[key] for key in handle.files}
    log(f"labeller {config['force_field']['labeler']}: {len(conformers['molecule_id'])} conformers")
    arrays, skipped = label_shard(conformers, config)
    save_npz(args.out, **arrays)
    write_skipped_csv(args.skipped, skipped)
    write_provenance(args.provenance, {"step": "data.labels", "data": config})
    log(f"wrote {len(arrays['energy'])} labelled geometries; {len(skipped)} molecules failed labelling")


if __name__ == "__main__":
    main()
