"""The version is stated twice — `pyproject.toml` for packaging, `mindhier/_version.py` for the code — and the two
agree; the package root and what provenance records read it from `_version`."""

import re
from pathlib import Path

import mindhier
from mindhier import _version
from mindhier.provenance import provenance

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def pyproject_version() -> str:
    project = PYPROJECT.read_text().split("[project]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version = "([^"]+)"$', project, re.MULTILINE).group(1)


def test_the_version_module_states_pyprojects_version():
    assert _version.__version__ == pyproject_version()


def test_the_root_and_provenance_report_the_version_module():
    assert mindhier.__version__ is _version.__version__
    assert provenance()["mindhier_version"] == _version.__version__
