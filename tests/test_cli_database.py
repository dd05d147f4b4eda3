"""``--db`` at the command line: plain paths, and one-line errors that never create files."""

import pytest
from click.testing import CliRunner

from wattledger.cli.main import cli

READ_COMMANDS = [
    ["report", "cost"],
    ["report", "trend"],
    ["price", "list"],
    ["token", "list"],
    ["db", "status"],
    ["export", "chargeback", "--period", "2025-11", "--out", "x.csv"],
]


def run(*args, **kwargs):
    return CliRunner().invoke(cli, list(args), **kwargs)


def one_line_error(result, code=4):
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.splitlines()) == 1
    return result.stderr


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_reading_a_missing_sqlite_file_creates_nothing(tmp_path, command):
    path = tmp_path / "sub" / "dir" / "w.db"

    result = run(*command, "--db", f"sqlite:///{path}")

    assert one_line_error(result) == (
        f"error: no wattledger database at {path}; create it with: "
        f"wattledger db upgrade --db sqlite:///{path}\n"
    )
    assert not (tmp_path / "sub").exists()


def test_a_plain_path_is_a_sqlite_file_everywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    created = run("db", "upgrade", "--db", "plain.db")
    assert created.exit_code == 0, created.output
    assert created.stdout.startswith("sqlite:///plain.db upgraded from empty to schema")

    assert (
        run(
            "price", "set", "--sku", "H100", "--usd-per-gpu-hour", "2", "--db", "plain.db"
        ).exit_code
        == 0
    )
    listed = run("price", "list", "--db", "plain.db", "--format", "csv")
    assert listed.exit_code == 0, listed.output
    assert "sku,H100,2000-01-01T00:00:00Z,2.0" in listed.stdout

    monkeypatch.setenv("WATTLEDGER_DB", str(tmp_path / "plain.db"))
    assert "H100" in run("price", "list", "--format", "csv").stdout


def test_a_file_that_is_not_sqlite_is_named(tmp_path):
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")

    for command in (["price", "list"], ["db", "upgrade"]):
        result = run(*command, "--db", f"sqlite:///{text}")
        assert one_line_error(result) == (
            f"error: {text} is not a SQLite database (file is not a database); check --db, "
            "or WATTLEDGER_DB and db in the config file\n"
        )
    assert text.read_text() == "root:x:0:0:root:/root:/bin/bash\n"


def test_a_path_through_a_file_is_named(tmp_path):
    text = tmp_path / "passwd"
    text.write_text("x")

    result = run("db", "upgrade", "--db", f"sqlite:///{text}/x.db")

    assert one_line_error(result) == (
        f"error: --db {text}/x.db: {text} is a file, not a folder; give a path in a folder\n"
    )


@pytest.mark.parametrize("where", ["{long}/x.db", "{long}.db"])
def test_a_name_too_long_for_the_file_system_is_named(tmp_path, where):
    path = tmp_path / where.format(long="a" * 300)

    result = run("db", "upgrade", "--db", f"sqlite:///{path}")

    assert "is 30" in one_line_error(result)
    assert "characters long, more than the file system allows (255)" in result.stderr


def test_a_directory_is_named(tmp_path):
    result = run("report", "cost", "--db", str(tmp_path))

    assert one_line_error(result) == (
        f"error: --db {tmp_path} is a directory; give a database file, "
        f"e.g. {tmp_path / 'wattledger.db'}\n"
    )


def test_a_config_that_is_a_directory_or_missing_is_an_error_even_with_db(tmp_path):
    db = ["--db", str(tmp_path / "w.db")]

    result = run("--config", str(tmp_path), "price", "list", *db)
    assert one_line_error(result, 2) == (
        f"error: config file {tmp_path} is a directory; give the TOML file itself, "
        f"e.g. {tmp_path / 'wattledger.toml'}\n"
    )

    result = run("price", "list", *db, env={"WATTLEDGER_CONFIG": str(tmp_path / "nope.toml")})
    assert one_line_error(result, 2) == (
        f"error: config file {tmp_path / 'nope.toml'} does not exist; "
        "check --config or WATTLEDGER_CONFIG\n"
    )


CONFIG_COMMANDS = [
    ["report", "cost"],
    ["report", "compare", "--along", "sku", "--a", "H100", "--b", "H200"],
    ["report", "trend"],
    ["price", "list"],
    ["token", "list"],
    ["db", "status"],
]
BAD_CONFIGS = [
    ('[agent]\nsitee = "dc1"\n', "{path}: unknown setting agent.sitee; did you mean agent.site?"),
    (
        "[agent\n",
        "config file {path} is not valid TOML: "
        "Expected ']' at the end of a table declaration (at line 1, column 7)",
    ),
]


@pytest.mark.parametrize("command", CONFIG_COMMANDS)
@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_a_broken_config_file_is_an_error_even_with_db(tmp_path, command, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    db = ["--db", str(tmp_path / "w.db")]
    assert run("db", "upgrade", *db).exit_code == 0
    expected = f"error: {message.format(path=config)}\n"

    named = run("--config", str(config), *command, *db)
    from_environment = run(*command, *db, env={"WATTLEDGER_CONFIG": str(config)})

    assert one_line_error(named, 2) == expected
    assert one_line_error(from_environment, 2) == expected


def test_an_unknown_schema_revision_is_a_one_line_error(tmp_path):
    from wattledger.migrations.runner import all_revisions

    result = run("db", "upgrade", "--db", str(tmp_path / "w.db"), "--revision", "9999")

    assert one_line_error(result, 2) == (
        "error: --revision '9999' is not a schema revision of this wattledger; "
        f"use head or one of {', '.join(all_revisions())}\n"
    )
    assert not (tmp_path / "w.db").exists()
