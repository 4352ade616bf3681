"""Every user error the package raises with a written message names the problem and the fix: `<problem>; <fix>`.

Read from the source (every `raise ...Error("...")` whose message is a literal), so a new message without its fix
fails here before a user meets it; the CLI prints the line as `mindhier: error: <problem>; <fix>`."""

from __future__ import annotations

import ast
from pathlib import Path

import mindhier

USER_ERRORS = {"MindhierError", "ConfigError", "DataError", "WeightsError", "RunFileError", "NonFiniteTrainingError"}


def _literal_text(node: ast.expr) -> str | None:
    """The constant text of a string literal or f-string (placeholders dropped); None for other expressions."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value for part in node.values if isinstance(part, ast.Constant))
    return None


def _user_error_messages() -> list[tuple[str, int, str]]:
    root = Path(mindhier.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args):
                continue
            name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
            text = _literal_text(node.exc.args[0])
            if name in USER_ERRORS and text is not None:
                found.append((str(path.relative_to(root)), node.lineno, text))
    return found


def test_the_source_raises_user_errors():
    assert len(_user_error_messages()) > 200


def test_every_user_error_names_its_fix():
    missing = [f"{where}:{line}: {text[:70]!r}" for where, line, text in _user_error_messages() if "; " not in text]
    assert not missing, "messages without '; <fix>':\n" + "\n".join(missing)
