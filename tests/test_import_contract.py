"""The dependency direction of the house style is enforced: `make lint` runs import-linter's contracts
(pyproject.toml), and a library module that imports the training code breaks them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.is_file(), reason="import-linter is installed with the dev extra")


def _lint(package_root: Path) -> subprocess.CompletedProcess:
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(package_root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=package_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_contracts_hold_on_the_package():
    result = _lint(ROOT / "src")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "2 kept, 0 broken" in result.stdout


def test_a_library_import_of_train_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "src" / "mindhier", tmp_path / "mindhier", ignore=shutil.ignore_patterns("__pycache__"))
    routing = tmp_path / "mindhier" / "models" / "routing.py"
    routing.write_text(routing.read_text() + "\nfrom mindhier.train.batches import global_batch  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "the library does not import train/, cli/, bench/ or demo BROKEN" in result.stdout
    assert "mindhier.models.routing -> mindhier.train.batches" in result.stdout
