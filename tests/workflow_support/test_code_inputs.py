"""code_inputs: the package files a module imports, from its import statements, on a fake package and on eqdyn."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from eqdyn.workflow_support import code_inputs

REPO = Path(__file__).resolve().parents[2]


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    """pkg with absolute, relative, nested, function-level and name-based imports, and a data file."""
    return write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/entry.py": """
            import os
            import pkg.leaf
            from pkg.sub import helper
            from . import sibling
            from pkg.sub.deep import thing as renamed

            def run():
                from pkg.late import value  # only on this path
                return value
        """,
            "pkg/leaf.py": "X = 1\n",
            "pkg/sibling.py": "from .sub.deep import thing\n",
            "pkg/late.py": "value = 2\n",
            "pkg/unused.py": "import pkg.leaf\n",
            "pkg/sub/__init__.py": "from ..leaf import X\n",
            "pkg/sub/helper.py": "",
            "pkg/sub/deep/__init__.py": "",
            "pkg/sub/deep/thing.py": "import importlib\nimportlib.import_module('pkg.named')\n",
            "pkg/named.py": "",
            "pkg/reader.py": """
            from importlib import resources
            TABLE = resources.files("pkg").joinpath("tables/table.json").read_text()
        """,
            "pkg/tables/table.json": "{}",
            "pkg/notapackage/orphan.py": "",  # no __init__.py above it: not importable as pkg.notapackage.orphan
            "other/__init__.py": "",
        },
    )


def test_follows_absolute_relative_nested_function_level_and_init_chains(fake: Path) -> None:
    assert code_inputs("pkg.entry", root=fake) == [
        "src/pkg/__init__.py",
        "src/pkg/entry.py",
        "src/pkg/late.py",  # imported inside a function
        "src/pkg/leaf.py",
        "src/pkg/named.py",  # importlib.import_module with a literal name
        "src/pkg/sibling.py",  # from . import sibling
        "src/pkg/sub/__init__.py",  # runs before pkg.sub.helper
        "src/pkg/sub/deep/__init__.py",
        "src/pkg/sub/deep/thing.py",  # from pkg.sub.deep import thing: a submodule
        "src/pkg/sub/helper.py",
    ]


def test_a_leaf_has_its_package_inits_only(fake: Path) -> None:
    assert code_inputs("pkg.sub.helper", root=fake) == [
        "src/pkg/__init__.py",
        "src/pkg/leaf.py",
        "src/pkg/sub/__init__.py",
        "src/pkg/sub/helper.py",
    ]


def test_data_files_named_by_a_literal_path_are_inputs(fake: Path) -> None:
    assert "src/pkg/tables/table.json" in code_inputs("pkg.reader", root=fake)
    assert not any(path.endswith(".json") for path in code_inputs("pkg.entry", root=fake))


def test_data_files_named_through_a_package_or_by_their_name_are_inputs(tmp_path: Path) -> None:
    root = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/config.py": "from importlib import resources\nresources.files('pkg.schemas').joinpath('s.yaml')\n",
            "pkg/schemas/__init__.py": "",
            "pkg/schemas/s.yaml": "",
            "pkg/sub/__init__.py": "",
            "pkg/sub/reader.py": "from pathlib import Path\nPath(__file__).parent / 'checks' / 'r.json'\n",
            "pkg/sub/checks/r.json": "{}",
            "pkg/other/r.json": "{}",  # the same name outside the reader's folder: not its file
        },
    )
    assert "src/pkg/schemas/s.yaml" in code_inputs("pkg.config", root=root)
    reader = code_inputs("pkg.sub.reader", root=root)
    assert "src/pkg/sub/checks/r.json" in reader and "src/pkg/other/r.json" not in reader


def test_edits_to_the_tree_are_seen_by_a_new_parse(tmp_path: Path) -> None:
    root = write_package(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "", "pkg/b.py": ""})
    assert code_inputs("pkg.a", root=root) == ["src/pkg/__init__.py", "src/pkg/a.py"]
    (root / "src/pkg/a.py").write_text("from pkg import b\n")
    # the parse cache is keyed by each file's time and size: an edited file is parsed again
    assert code_inputs("pkg.a", root=root) == ["src/pkg/__init__.py", "src/pkg/a.py", "src/pkg/b.py"]


def test_unknown_modules_are_an_error(fake: Path) -> None:
    with pytest.raises(ModuleNotFoundError, match=r"pkg\.missing"):
        code_inputs("pkg.missing", root=fake)
    with pytest.raises(ModuleNotFoundError, match="nopkg"):
        code_inputs("nopkg.entry", root=fake)
    with pytest.raises(ModuleNotFoundError, match="notapackage"):
        code_inputs("pkg.notapackage.orphan", root=fake)


def test_python_m_on_a_package_runs_its_main(tmp_path: Path) -> None:
    root = write_package(
        tmp_path, {"pkg/__init__.py": "", "pkg/cli/__init__.py": "", "pkg/cli/__main__.py": "", "pkg/cli/extra.py": ""}
    )
    assert code_inputs("pkg.cli", root=root) == [
        "src/pkg/__init__.py",
        "src/pkg/cli/__init__.py",
        "src/pkg/cli/__main__.py",
    ]


def test_eqdyn_decomposition_includes_what_it_runs() -> None:
    inputs = code_inputs("eqdyn.analysis.checkpoint_decomposition", root=REPO)
    for needed in (
        "src/eqdyn/__init__.py",
        "src/eqdyn/analysis/__init__.py",
        "src/eqdyn/symmetry/rotations.py",
        "src/eqdyn/molecules.py",
        "src/eqdyn/decomposition.py",
        "src/eqdyn/tasks/base.py",
        "src/eqdyn/tasks/__init__.py",
        "src/eqdyn/tasks/flow_matching.py",
    ):
        assert needed in inputs, needed
    assert "src/eqdyn/figures/twirling.py" not in inputs


def test_eqdyn_download_code_declares_its_checksum_registry() -> None:
    assert "src/eqdyn/data/checksums/registry.json" in code_inputs("eqdyn.data.acquire", root=REPO)


def test_eqdyn_figure_does_not_depend_on_the_models() -> None:
    inputs = code_inputs("eqdyn.figures.twirling", root=REPO)
    assert "src/eqdyn/figures/twirling.py" in inputs and "src/eqdyn/figures/style.py" in inputs
    assert not any(path.startswith("src/eqdyn/models/") for path in inputs)
