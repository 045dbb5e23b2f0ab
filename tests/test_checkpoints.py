"""eqdyn.checkpoints: what the trainer writes, the analyses read back; no analysis imports the trainer."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from eqdyn import checkpoints
from eqdyn.checkpoints import (
    load_checkpoint,
    load_weights,
    manifest_checkpoints,
    save_checkpoint,
    select_device,
)
from eqdyn.io import sha256_file
from eqdyn.models import build_model

ANALYSIS_DIR = Path(checkpoints.__file__).parent / "analysis"
# the efficiency analysis times the Trainer itself, so it is the one analysis that imports it
TRAINER_USERS = {"efficiency.py"}
RUN = {"task": "flow_matching", "model": {"family": "transformer", "size": "xs", "overrides": {}}}


def trained_model(seed: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("flow_matching", "transformer", "xs")


def test_a_saved_checkpoint_has_its_manifest_entry_and_loads_back(tmp_path: Path) -> None:
    model = trained_model()
    entry = save_checkpoint(tmp_path / "step_0000010.pt", 10, model.state_dict(), "run-a")
    assert entry == {"step": 10, "file": "step_0000010.pt", "sha256": sha256_file(tmp_path / "step_0000010.pt")}
    (tmp_path / "manifest.json").write_text(json.dumps({"checkpoints": [entry]}))
    [listed] = manifest_checkpoints(tmp_path / "manifest.json")
    assert listed.step == 10 and listed.path == tmp_path / "step_0000010.pt"
    loaded = load_checkpoint(RUN, listed.path)
    assert not loaded.training
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_saving_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    weights = trained_model().state_dict()
    first = save_checkpoint(tmp_path / "a.pt", 1, weights, "run")
    second = save_checkpoint(tmp_path / "b.pt", 1, weights, "run")
    assert first["sha256"] == second["sha256"]


def test_load_weights_takes_a_state_dict_or_a_checkpoint_and_refuses_a_pickled_module(tmp_path: Path) -> None:
    model = trained_model()
    torch.save(model.state_dict(), tmp_path / "state_dict.pt")
    save_checkpoint(tmp_path / "checkpoint.pt", 0, model.state_dict(), "run")
    torch.save(model, tmp_path / "module.pt")
    for name in ("state_dict.pt", "checkpoint.pt"):
        loaded = load_weights(trained_model(seed=9), tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters(), strict=True)), name
    with pytest.raises(TypeError, match="whole pickled module"):
        load_weights(trained_model(), tmp_path / "module.pt")
    with pytest.raises(RuntimeError, match="Missing key"):  # weights of another architecture
        load_weights(nn.Linear(3, 3), tmp_path / "checkpoint.pt")


def test_device_selection() -> None:
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(torch.device("cpu")) == torch.device("cpu")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            select_device("cuda")


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_no_analysis_imports_the_trainer(tmp_path: Path) -> None:
    offenders = [
        path.name
        for path in sorted(ANALYSIS_DIR.glob("*.py"))
        if path.name not in TRAINER_USERS and "eqdyn.training.train" in imported_modules(path)
    ]
    assert offenders == []
    # the check sees such an import
    (tmp_path / "bad.py").write_text("from eqdyn.training.train import load_checkpoint\n")
    assert "eqdyn.training.train" in imported_modules(tmp_path / "bad.py")


def test_the_trainer_uses_the_same_functions() -> None:
    from eqdyn.training import train

    assert train.load_checkpoint is checkpoints.load_checkpoint
    assert train.select_device is checkpoints.select_device
    assert train.save_checkpoint is checkpoints.save_checkpoint
