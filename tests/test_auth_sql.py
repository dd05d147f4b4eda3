"""The CLI never builds SQL from strings: statements are SQLAlchemy expressions, values are bound.

A source check walks every module under ``cli/`` and fails on SQL handed over as text (``text()``,
``exec_driver_sql``, or ``execute`` of a string, f-string, concatenation or ``.format``). Targeted
tests then push SQL through the flags a person types and find it stored as plain data.
"""

import ast
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from wattledger.cli.main import cli
from wattledger.collector import schema as s
from wattledger.collector.db import open_engine

CLI_ROOT = Path(__file__).resolve().parent.parent / "cli"
INJECTION = "H100'; DROP TABLE prices; --"


def _is_built_string(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and (
        _is_built_string(node.left) or _is_built_string(node.right)
    ):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    )


def _only_constants(node: ast.AST) -> bool:
    """Built from literals and module constants (UPPER_CASE names) alone: no user input."""
    names = [n for n in ast.walk(node) if isinstance(n, ast.Name)]
    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
    return not calls and all(n.id.isupper() for n in names)


def _sqlalchemy_text_imported(tree: ast.AST) -> bool:
    return any(
        isinstance(n, ast.ImportFrom)
        and (n.module or "").startswith("sqlalchemy")
        and any(alias.name == "text" for alias in n.names)
        for n in ast.walk(tree)
    )


def sql_from_strings(source: str) -> list[int]:
    """Line numbers where SQL is given to the database as a string."""
    tree = ast.parse(source)
    sql_text = _sqlalchemy_text_imported(tree)
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = (
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        )
        as_text = name == "text" and (sql_text or isinstance(node.func, ast.Attribute))
        built_literal = name == "literal_column" and not all(map(_only_constants, node.args))
        built_statement = (
            name in ("execute", "executemany", "executescript")
            and node.args
            and _is_built_string(node.args[0])
        )
        if name == "exec_driver_sql" or as_text or built_literal or built_statement:
            lines.append(node.lineno)
    return sorted(set(lines))


def test_the_source_check_catches_sql_built_from_strings():
    caught = sql_from_strings(
        "conn.execute(f'SELECT * FROM prices WHERE key = {key}')\n"
        "conn.execute('DELETE FROM prices WHERE key = ' + key)\n"
        "conn.execute(sqlalchemy.text('SELECT 1'))\n"
        "conn.execute(select(prices).where(prices.c.key == key))\n"
        "literal_column(f\"'{label}'\")\n"
        "literal_column(f\"'{LABEL}'\")\n"
    )

    assert sorted(caught) == [1, 2, 3, 5]


def test_no_cli_module_hands_sql_to_the_database_as_a_string():
    offenders = {
        str(path.relative_to(CLI_ROOT.parent)): lines
        for path in sorted(CLI_ROOT.rglob("*.py"))
        if (lines := sql_from_strings(path.read_text()))
    }

    assert offenders == {}


def test_sql_in_a_price_key_is_stored_as_data(tmp_path):
    db = f"sqlite:///{tmp_path / 'w.db'}"
    runner = CliRunner()
    runner.invoke(cli, ["db", "upgrade", "--db", db])

    result = runner.invoke(
        cli, ["price", "set", "--sku", INJECTION, "--usd-per-gpu-hour", "2", "--db", db]
    )

    assert result.exit_code == 0, result.output
    with open_engine(db).connect() as conn:
        assert conn.execute(select(s.prices.c.key)).scalars().all() == [INJECTION]


def test_sql_in_report_grouping_is_refused_and_touches_nothing(tmp_path):
    db = f"sqlite:///{tmp_path / 'w.db'}"
    runner = CliRunner()
    runner.invoke(cli, ["db", "upgrade", "--db", db])
    runner.invoke(cli, ["price", "set", "--sku", "H100", "--usd-per-gpu-hour", "2", "--db", db])

    result = runner.invoke(cli, ["report", "cost", "--by", "model; DROP TABLE prices", "--db", db])

    assert result.exit_code != 0
    assert "Traceback" not in result.output
    with open_engine(db).connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.prices)).scalar() == 1


def test_sql_in_a_token_name_is_refused(tmp_path):
    db = f"sqlite:///{tmp_path / 'w.db'}"
    runner = CliRunner()
    runner.invoke(cli, ["db", "upgrade", "--db", db])

    result = runner.invoke(cli, ["token", "create", "x'); DROP TABLE api_tokens; --", "--db", db])

    assert result.exit_code == 1
    assert "is not valid" in result.output
    with open_engine(db).connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.api_tokens)).scalar() == 0
