"""Table bundles: what is packed comes back byte for byte, and a damaged bundle or a clash fails naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eqdyn.export import BundleError, main, pack, unpack, verify


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results" / "gpu"
    (root / "runs" / "a").mkdir(parents=True)
    (root / "runs" / "a" / "metrics.csv").write_text("step,train_loss\n1,0.5\n")
    (root / "analysis" / "decomposition").mkdir(parents=True)
    (root / "analysis" / "decomposition" / "a.csv").write_text("run,step,value\na,1,0.25\n")
    return root


def test_pack_then_unpack_restores_every_file(results: Path, tmp_path: Path) -> None:
    files = sorted(results.rglob("*.csv"))
    index = pack(results, files, tmp_path / "bundle", note="test")
    assert [entry["path"] for entry in index["files"]] == ["analysis/decomposition/a.csv", "runs/a/metrics.csv"]
    written = unpack(tmp_path / "bundle", tmp_path / "elsewhere")
    assert sorted(p.read_bytes() for p in written) == sorted(p.read_bytes() for p in files)
    assert unpack(tmp_path / "bundle", tmp_path / "elsewhere")  # identical files are not a clash


def test_damaged_bundle_fails_on_its_hash_before_copying(results: Path, tmp_path: Path) -> None:
    pack(results, sorted(results.rglob("*.csv")), tmp_path / "bundle")
    (tmp_path / "bundle" / "runs" / "a" / "metrics.csv").write_text("step,train_loss\n1,0.4\n")
    with pytest.raises(BundleError, match=r"runs/a/metrics.csv: sha256 differs"):
        verify(tmp_path / "bundle")
    with pytest.raises(BundleError):
        unpack(tmp_path / "bundle", tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()  # nothing half-copied


def test_unpack_refuses_to_overwrite_different_content(results: Path, tmp_path: Path) -> None:
    pack(results, sorted(results.rglob("*.csv")), tmp_path / "bundle")
    (results / "runs" / "a" / "metrics.csv").write_text("changed\n")
    with pytest.raises(BundleError, match=r"exists with different content"):
        unpack(tmp_path / "bundle", results)
    unpack(tmp_path / "bundle", results, force=True)
    assert (results / "runs" / "a" / "metrics.csv").read_text() == "step,train_loss\n1,0.5\n"


def test_cli_reports_errors_with_the_file(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("x\n")
    assert main(["pack", "--root", str(results), "--out", str(tmp_path / "b"), "--files", str(outside)]) == 1
    assert "outside.csv: not under the bundle root" in capsys.readouterr().err
    assert main(["unpack", "--bundle", str(tmp_path / "nothing"), "--root", str(results)]) == 1
    assert "index.json: missing" in capsys.readouterr().err
    files = [str(p) for p in sorted(results.rglob("*.csv"))]
    assert main(["pack", "--root", str(results), "--out", str(tmp_path / "b"), "--files", *files]) == 0
    assert len(json.loads((tmp_path / "b" / "index.json").read_text())["files"]) == 2


def test_provenance_files_are_kept_apart(results: Path, tmp_path: Path) -> None:
    manifest = results / "datasets" / "flow_matching" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    index = pack(results, [results / "runs" / "a" / "metrics.csv"], tmp_path / "bundle", provenance=[manifest])
    assert [entry["path"] for entry in index["files"]] == [
        "provenance/datasets/flow_matching/manifest.json",
        "runs/a/metrics.csv",
    ]
    unpack(tmp_path / "bundle", tmp_path / "here")
    assert (tmp_path / "here" / "provenance" / "datasets" / "flow_matching" / "manifest.json").exists()
    assert not (tmp_path / "here" / "datasets").exists()


def test_unpacked_files_share_one_modification_time(results: Path, tmp_path: Path) -> None:
    """Snakemake compares times: a config copied after a table must not look newer than it."""
    pack(results, sorted(results.rglob("*.csv")), tmp_path / "bundle")
    written = unpack(tmp_path / "bundle", tmp_path / "here")
    assert len({path.stat().st_mtime_ns for path in written}) == 1
