"""The README runs as written: its Python example (in a temporary working directory) and its "Your own participant"
commands (on the tiny world)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[0] == "24"  # the tiny preset's 24 test images
    assert (tmp_path / "runs/readme-data/manifest.json").is_file()


def test_readme_starts_with_the_two_commands():
    lines = [line for line in README.read_text().splitlines() if line.strip()]
    assert lines[1:5] == ["```bash", "make demo", "make test", "```"]


def _participant_commands() -> list[list[str]]:
    """The bash block of the README's "Your own participant", one argv per command (continuations joined)."""
    import shlex

    text = README.read_text().split("## Your own participant", 1)[1]
    block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1).replace("\\\n", " ")
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(c)[1:] for c in commands if c.startswith("mindhier ")]


@pytest.mark.slow
def test_the_own_participant_recipe_runs_on_the_tiny_world(tiny_stage_runs, tmp_path, monkeypatch):
    """The commands as written, on the tiny world: subjects 1 2 5 7 → 1 (shared), participant 9 → 2."""
    from mindhier.cli import main

    _, result, _, tokenizer = tiny_stage_runs
    monkeypatch.chdir(tmp_path)
    names = {"NSD": str(result.root), "MYDATA": str(result.root), "TOKENIZER": str(tokenizer)}
    small = {
        "train": ["--preset", "tiny"],
        "adapt": ["--set", "adapt.steps=20", "--set", "adapt.alone_steps=8", "--set", "adapt.batch_size=32"],
        "eval": ["--no-judge"],
    }
    commands = _participant_commands()
    assert [c[0] for c in commands] == ["data", "train", "train", "adapt", "train", "reconstruct", "eval", "report"]
    for argv in commands:
        argv = [names.get(a, a) for a in argv]
        if "--subjects" in argv:
            at = argv.index("--subjects")
            argv[at + 1 : at + 5] = ["1"]
        argv = ["2" if a == "9" else a for a in argv]
        extra = small.get(argv[0], []) + (["--quiet"] if argv[0] not in ("data", "eval", "report") else [])
        assert main([*argv, *extra]) == 0, argv
    assert "<th>adapted</th>" in (tmp_path / "mine/report/index.html").read_text()
