"""A user's own molecules (data.source: {smiles_file: path}): parse-time checks, duplicates, charged species and
radicals, and the test study's data stage run on the small SMILES file shipped in tests/data/."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem

from eqdyn.config import ConfigError, validate_config
from eqdyn.data.acquire import draw_subset
from eqdyn.data.common import CHARGED, RADICAL, Skip, prepare_molecule
from eqdyn.data.datasets import SPLITS, TASKS
from eqdyn.data.sources import read_source
from eqdyn.data.user_molecules import SmilesFileError, read_smiles_file

REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout these tests run in

SHIPPED_SMILES = REPO_ROOT / "tests" / "data" / "molecules.smi"
SHIPPED_RELATIVE = "tests/data/molecules.smi"  # as a user writes it in a config (paths are from the repository)


def test_smi_file_with_and_without_ids(tmp_path: Path) -> None:
    path = tmp_path / "mine.smi"
    path.write_text("SMILES Name\n# comment\nCCO ethanol\n\nc1ccccc1\tbenzene ring\nCC\n")
    molecules = read_smiles_file(path)
    assert [(m.line, m.smiles, m.source_id) for m in molecules] == [
        (3, "CCO", "ethanol"),
        (5, "c1ccccc1", "benzene ring"),
        (6, "CC", "6"),  # no id: the line number
    ]


def test_csv_file_with_smiles_and_optional_id_columns(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text('\ufeffID,SMILES,comment\nm1,CCO,"a, quoted comment"\nm2,CCN,x\n', encoding="utf-8")  # BOM
    table = read_source({"smiles_file": str(path)}, tmp_path)
    assert table.to_dict("list") == {"source_id": ["m1", "m2"], "smiles": ["CCO", "CCN"]}
    no_ids = tmp_path / "plain.csv"
    no_ids.write_text("smiles\nCCO\nCCN\n")
    assert read_source({"smiles_file": str(no_ids)}, tmp_path)["source_id"].tolist() == ["2", "3"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("no_column.csv", "molecule,id\nCCO,1\n", r"no_column\.csv, line 1: no 'smiles' column"),
        ("ragged.csv", "smiles,id\nCCO,1\nCCN,2,extra\n", r"ragged\.csv, line 3: 3 fields, the header has 2"),
        ("empty_field.csv", "smiles,id\n,1\n", r"empty_field\.csv, line 2: empty smiles field"),
        ("empty.smi", "# only a comment\n\n", r"empty\.smi: no molecules"),
        ("latin1.smi", "CCO ok\nCCO caf\xe9\n", r"latin1\.smi, line 2: not UTF-8"),
        ("table.xlsx", "x", r"unknown file type '\.xlsx'"),
    ],
)
def test_unreadable_files_are_named_with_the_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(SmilesFileError, match=message):
        read_smiles_file(path)


def test_smiles_file_is_checked_when_the_config_is_validated(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.smi"
    with pytest.raises(ConfigError, match=r"data\.source: .*nowhere\.smi: no such file"):
        validate_config({"data": {"source": {"smiles_file": str(missing)}}})
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nCCO\n")
    with pytest.raises(ConfigError, match=r"data\.source: .*bad\.csv, line 1: no 'smiles' column"):
        validate_config({"data": {"source": {"smiles_file": str(bad)}}})
    with pytest.raises(ConfigError, match=r"data\.source: .*smiles_file"):  # a misspelt key names the key
        validate_config({"data": {"source": {"smiles_files": SHIPPED_RELATIVE}}})
    resolved = validate_config({"data": {"source": {"smiles_file": str(SHIPPED_SMILES)}}})
    assert resolved["data"]["charged_molecules"] == "skip" and resolved["data"]["radicals"] == "skip"


def test_duplicates_by_canonical_smiles_are_passed_over_and_the_draw_stays_nested() -> None:
    # Isotope labels make 200 distinct molecules; rows 200.. repeat some of them written differently.
    distinct = [f"[{i + 1}CH3]O" for i in range(200)]
    copies = [f"O[{i + 1}CH3]" for i in range(0, 200, 4)]
    table = pd.DataFrame({"source_id": [str(i) for i in range(250)], "smiles": distinct + copies})
    everything = draw_subset(table, "toy", 10_000, seed=1)
    assert len(everything.molecules) == 200 and len(everything.duplicates) == 50
    canonical = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in everything.molecules["smiles"]]
    assert len(set(canonical)) == 200
    kept = everything.molecules.set_index("molecule_id")["source_id"]
    for row in everything.duplicates.itertuples():  # each copy points at the molecule it repeats
        assert kept[row.duplicate_of_molecule_id] == row.duplicate_of_source_id
        assert Chem.MolToSmiles(Chem.MolFromSmiles(row.smiles)) == row.canonical_smiles
    small = draw_subset(table, "toy", 30, seed=1).molecules
    assert small["source_id"].tolist() == everything.molecules["source_id"].iloc[:30].tolist()


def test_charged_molecules_and_radicals_are_skipped_or_kept_by_config() -> None:
    elements, size = ["H", "C", "N", "O"], 9
    charged = prepare_molecule("C[NH3+]", elements, size)
    assert isinstance(charged, Skip) and charged.reason == CHARGED and "+1" in charged.detail
    radical = prepare_molecule("[CH2]C", elements, size)
    assert isinstance(radical, Skip) and radical.reason == RADICAL
    assert not isinstance(prepare_molecule("[NH3+]CC([O-])=O", elements, size), Skip)  # zwitterion: net 0
    assert not isinstance(prepare_molecule("C[NH3+]", elements, size, keep_charged=True), Skip)
    assert not isinstance(prepare_molecule("[CH2]C", elements, size, keep_radicals=True), Skip)


def check_no_molecule_in_two_splits(results: Path, molecules: pd.DataFrame) -> None:
    parsed = {row.molecule_id: Chem.MolFromSmiles(row.smiles) for row in molecules.itertuples()}
    canonical = {molecule_id: Chem.MolToSmiles(mol) for molecule_id, mol in parsed.items() if mol is not None}
    for task in TASKS:
        seen: dict[str, str] = {}
        for name in SPLITS:
            with np.load(results / "datasets" / task / f"{name}.npz") as handle:
                for molecule_id in np.unique(handle["molecule_id"]):
                    key = canonical[int(molecule_id)]
                    assert seen.setdefault(key, name) == name, f"{task}: {key} in {seen[key]} and {name}"


def test_the_test_study_data_stage_on_the_shipped_smiles_file(
    tmp_path: Path,
    data_stage: Callable[[dict[str, Any], Path], Path],
    study_data_config: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """CI: config/test.yaml's data stage on tests/data/molecules.smi, every module as its rule runs it."""
    config = study_data_config({"source": {"smiles_file": str(SHIPPED_SMILES)}, "max_molecules": 100})
    results = data_stage(config, tmp_path / "results")
    summary = json.loads((results / "data" / "skipped_summary.json").read_text())
    by_reason = summary["skipped_by_reason"]
    assert summary["duplicates_removed"] == 1  # ethanol, written twice
    assert (by_reason["charged"], by_reason["radical"], by_reason["parse_failed"]) == (2, 1, 2)
    assert by_reason["disallowed_element"] == 1  # ethanethiol: S is not in the test study's elements
    assert summary["total_attempted"] == 33 and summary["total_kept"] == 27
    assert (summary["kept_charged"], summary["kept_radicals"]) == (0, 0)
    assert json.loads((results / "logs" / "data" / "skipped_summary.json").read_text()) == summary
    molecules = pd.read_csv(results / "data" / "molecules.csv", keep_default_na=False)
    assert set(molecules["source"]) == {"smiles_file:molecules.smi"}
    check_no_molecule_in_two_splits(results, molecules)
    for task in TASKS:
        manifest = json.loads((results / "datasets" / task / "manifest.json").read_text())
        assert manifest["molecules"]["duplicates_removed"] == 1
        assert sum(manifest["counts"][name]["molecules"] for name in SPLITS) == 27
        assert manifest["counts"]["test"]["examples"] >= config["min_test_examples"]


def test_kept_charged_molecules_and_radicals_are_counted(
    tmp_path: Path,
    data_stage: Callable[[dict[str, Any], Path], Path],
    study_data_config: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    path = tmp_path / "ions.smi"
    neutral = ["CCO", "CCN", "CCC", "OCCO", "CC#N", "C1CC1", "CCCC", "CC(C)O", "NC=O", "COC", "CC(C)=O", "C1CCOC1"]
    neutral += ["c1ccccc1", "CC(=O)O", "OC=O", "c1ccoc1", "CC(N)=O"]  # 20 molecules: two for the test split
    path.write_text("\n".join([*neutral, "C[NH3+]", "CC(=O)[O-]", "[CH2]C"]) + "\n")
    overrides = {"source": {"smiles_file": str(path)}, "charged_molecules": "keep", "radicals": "keep"}
    results = data_stage(study_data_config(overrides), tmp_path / "results")
    summary = json.loads((results / "data" / "skipped_summary.json").read_text())
    assert summary["total_kept"] == 20 and summary["total_skipped"] == 0
    assert (summary["kept_charged"], summary["kept_radicals"]) == (2, 1)
    manifest = json.loads((results / "datasets" / "flow_matching" / "manifest.json").read_text())
    assert manifest["molecules"]["kept_charged"] == 2 and manifest["molecules"]["charged_molecules"] == "keep"
