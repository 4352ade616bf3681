"""Every measured figure in the README comes from a committed result file: the README's generated blocks equal what
their files render (`scripts/readme_tables.py --check`), a change on either side is caught, no measured table sits
outside a block, and the commands' `--record` writes files of the checked schema."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from mindhier.cli import main
from mindhier.errors import MindhierError
from mindhier.result_files import RESULT_SCHEMA, check_result_path, read_result, result_record, write_result

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "readme_tables.py"


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("readme_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _blocks(tables, text: str) -> list[tuple[str, str, str]]:
    return [(m.group(2), m.group(3), m.group(4)) for m in tables.BLOCK.finditer(text)]


def test_every_readme_block_is_what_its_file_renders(tables):
    text = (ROOT / "README.md").read_text()
    blocks = _blocks(tables, text)
    assert {view for _, view, _ in blocks} >= {"demo-rows", "sampler-table", "decoders-table", "plan-table"}
    for name, view, body in blocks:
        assert (ROOT / name).exists(), f"README block {view} names {name}, which is not in the repository"
        assert body.strip(), f"README block {name} {view} is empty: run python scripts/readme_tables.py"
    assert tables.differing_blocks(text) == []


def test_the_recipe_cost_tables_are_what_the_plan_records_render(tables):
    text = (ROOT / "docs" / "reproduce-nsd.md").read_text()
    blocks = _blocks(tables, text)
    assert {(name, view) for name, view, _ in blocks} == {
        (f"results/{plan}.json", view) for plan in ("plan", "plan_cached") for view in ("plan-stages", "plan-disk")
    }
    assert all(body.strip() for _, _, body in blocks)
    assert tables.differing_blocks(text) == []
    assert tables.main(["--check"]) == 0  # both documents


def _copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "results", tmp_path / "results")
    shutil.copytree(ROOT / "src" / "mindhier" / "priors", tmp_path / "src" / "mindhier" / "priors")
    return tmp_path


def test_a_number_changed_in_a_result_file_fails_the_check(tables, tmp_path):
    root = _copy(tmp_path)
    path = root / "results" / "plan.json"
    record = json.loads(path.read_text())
    record["numbers"]["stages"][0]["expected_hours"] += 1.0
    path.write_text(json.dumps(record))
    assert tables.differing_blocks((root / "README.md").read_text(), root) == ["results/plan.json plan-table"]


def test_a_number_changed_in_the_readme_fails_the_check(tables, tmp_path):
    root = _copy(tmp_path)
    text = (root / "README.md").read_text()
    name, view, body = next(b for b in _blocks(tables, text) if b[1] == "sampler-table")
    changed = re.sub(r"\d+\.\d", lambda m: str(float(m.group()) + 1.1)[: len(m.group())], body, count=1)
    assert changed != body
    text = text.replace(body, changed)
    assert tables.differing_blocks(text, root) == [f"{name} {view}"]
    assert tables.main(["--check", "--readme", str(root / "README.md")]) == 0  # the file on disk is unchanged
    (root / "README.md").write_text(text)
    assert tables.main(["--check", "--readme", str(root / "README.md")]) == 1
    assert tables.main(["--readme", str(root / "README.md")]) == 0  # re-rendering restores it
    assert tables.differing_blocks((root / "README.md").read_text(), root) == []


def test_no_measured_table_sits_outside_a_generated_block(tables):
    """A table row with a measured-looking decimal (0.123, 12.5 ms) outside a block is a figure without a file."""
    text = tables.BLOCK.sub("", (ROOT / "README.md").read_text())
    rows = [line for line in text.splitlines() if line.startswith("|") and re.search(r"\b\d+\.\d{2,}\b", line)]
    assert rows == []


def test_every_committed_result_file_is_valid_and_says_where_it_came_from():
    files = sorted((ROOT / "results").glob("*.json"))
    assert files
    for path in files:
        record = read_result(path)
        assert record["source"] == "measured" or record.get("note"), path
        assert {"cpu_count", "torch_threads", "torch"} <= set(record["machine"]), path
        assert re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?", record["commit"]), path


def test_a_record_round_trips_and_a_bad_one_is_one_line(tmp_path):
    record = result_record("plan", ["plan", "--gpus", "8"], 1.25, {"x": 1})
    assert record["schema"] == RESULT_SCHEMA and record["command"] == "mindhier plan --gpus 8"
    path = write_result(tmp_path / "r.json", record)
    assert read_result(path) == record
    (tmp_path / "old.json").write_text(json.dumps({**record, "schema": "mindhier-result/0"}))
    with pytest.raises(MindhierError, match="re-measure it with --record"):
        read_result(tmp_path / "old.json")
    (tmp_path / "partial.json").write_text(json.dumps({k: v for k, v in record.items() if k != "numbers"}))
    with pytest.raises(MindhierError, match="lacks the key 'numbers'"):
        read_result(tmp_path / "partial.json")
    with pytest.raises(MindhierError, match="exists already"):
        check_result_path(path, overwrite=False)
    with pytest.raises(MindhierError, match=r"not a \.json file"):
        check_result_path(tmp_path / "r.txt", overwrite=False)


def test_plan_record_writes_the_figures_the_readme_renders(tables, tmp_path, capsys):
    out = tmp_path / "plan.json"
    argv = ["plan", "--preset", "nsd-paper", "--gpus", "8", "--gpu-memory", "80", "--record", str(out)]
    assert main(argv) == 0
    record = read_result(out)
    assert record["name"] == "plan" and record["command"] == "mindhier " + " ".join(argv)
    committed = read_result(ROOT / "results" / "plan.json")
    assert record["numbers"] == committed["numbers"]  # the committed figures are what the code computes today
    capsys.readouterr()
    assert main(argv) == 2  # an existing result file is never replaced silently
    assert "exists already" in capsys.readouterr().err


def test_demo_record_refuses_an_existing_file_before_it_runs_unless_overwrite(tmp_path, capsys):
    existing = tmp_path / "demo.json"
    existing.write_text("{}")
    argv = ["demo", "--preset", "tiny", "--out", str(tmp_path / "demo"), "--record", str(existing), "--quiet"]
    assert main(argv) == 2 and "exists already" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # refused before any stage ran
    from mindhier.cli.main import build_parser

    args = build_parser().parse_args([*argv, "--overwrite"])
    assert args.overwrite and args.record == existing


def test_demo_numbers_read_the_demo_folder(tiny_demo):
    from mindhier.result_numbers import DEMO_METRICS, demo_numbers

    folder, _, code = tiny_demo
    assert code == 0
    numbers = demo_numbers(folder)
    assert {"coarse_to_fine", "static_terminal", "teacher_oracle", "shuffled_brain", "tokenizer_ceiling"} <= set(
        numbers["rows"]
    )
    metrics = json.loads((folder / "eval" / "coarse_to_fine" / "metrics.json").read_text())["metrics"]
    row = numbers["rows"]["coarse_to_fine"]
    assert row["pixcorr"]["mean"] == round(metrics["pixcorr"]["mean"], 3)
    assert row["judge.colour_f1"] is None  # the tiny demo runs without the judge: absent, never invented
    assert set(DEMO_METRICS) <= set(row)
    assert len(row["pixcorr_after_scale"]) == 4  # the tiny tokenizer's four scales
    assert numbers["protocol"]["n_images"] == 24 and numbers["stage_seconds"]["encoder"] >= 0
    assert [u["mean"] > 0 for u in row["condition_use_over_shuffled"]] != []  # per scale, from metrics.json


def test_demo_numbers_of_a_several_seed_study_read_its_first_seed(tiny_demo, tmp_path):
    """demo-long keeps each seed's rows under seedN/; the record's rows are the first seed's (the study's paired
    differences come from report/routing_study.json)."""
    import shutil

    from mindhier.errors import MindhierError
    from mindhier.result_numbers import demo_numbers

    folder, _, _ = tiny_demo
    study = tmp_path / "study"
    shutil.copytree(folder, study)
    for seed in (10, 2):
        shutil.copytree(study / "eval", study / f"seed{seed}" / "eval")
    shutil.rmtree(study / "eval")
    (study / "seed2" / "eval" / "coarse_to_fine" / "metrics.json").unlink()  # seed 2 comes first, and is read
    assert "coarse_to_fine" not in demo_numbers(study)["rows"]
    with pytest.raises(MindhierError, match="not a finished demo"):
        demo_numbers(tmp_path / "empty")
