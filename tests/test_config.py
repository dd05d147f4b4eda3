"""Configuration: file, environment overrides, and one-line errors for mistakes."""

import pytest

from wattledger.config import load_config
from wattledger.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "wattledger.toml"
    path.write_text(text)
    return path


def test_file_values_and_endpoint_tables_are_read(tmp_path):
    path = write(
        tmp_path,
        """
db = "sqlite:///x.db"
[agent]
node = "gpu-7"
site = "dc1"
export_interval_s = 30
[agent.tags]
team = "search"
[[agent.endpoints]]
name = "llama"
url = "http://127.0.0.1:8000/metrics"
engine = "vllm"
gpus = ["0", "1"]
""",
    )

    config = load_config(path, environ={})

    assert config.db == "sqlite:///x.db"
    assert (config.agent.node, config.agent.site, config.agent.export_interval_s) == (
        "gpu-7",
        "dc1",
        30.0,
    )
    assert config.agent.tags == {"team": "search"}
    [endpoint] = config.agent.endpoints
    assert (endpoint.name, endpoint.engine, endpoint.gpus) == ("llama", "vllm", ["0", "1"])


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, '[agent]\nnode = "from-file"\n')

    config = load_config(
        path,
        environ={
            "WATTLEDGER_AGENT_NODE": "from-env",
            "WATTLEDGER_AGENT_SAMPLE_INTERVAL_S": "0.5",
            "WATTLEDGER_AGENT_TAGS": "team=ads,tier=gold",
            "WATTLEDGER_DB": "postgresql://x@y/z",
            "WATTLEDGER_COLLECTOR_ALLOW_UNAUTHENTICATED_REMOTE": "yes",
        },
    )

    assert config.agent.node == "from-env"
    assert config.agent.sample_interval_s == 0.5
    assert config.agent.tags == {"team": "ads", "tier": "gold"}
    assert config.db == "postgresql://x@y/z"
    assert config.collector.allow_unauthenticated_remote is True


def test_no_file_at_the_default_place_means_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr("wattledger.config.default_config_path", lambda: tmp_path / "absent.toml")

    config = load_config(None, environ={})

    assert config.collector.listen == "127.0.0.1:4318"
    assert config.source is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[agent]\nsmaple_interval_s = 1\n",
            "unknown setting agent.smaple_interval_s; did you mean agent.sample_interval_s?",
        ),
        (
            '[agent]\nexport_interval_s = "often"\n',
            "agent.export_interval_s should be float, not 'often'",
        ),
        ("[agent]\nsample_interval_s = 0\n", "agent.sample_interval_s must be above zero"),
        ('[[agent.endpoints]]\nname = "a"\n', "agent.endpoints[0] needs a 'url'"),
        (
            '[[agent.endpoints]]\nname = "a"\nurl = "http://x/metrics"\nengine = "vlm"\n',
            "engine 'vlm' is unknown",
        ),
        (
            '[[agent.endpoints]]\nname = "a"\nurl = "x:8000"\n',
            "url must start with http:// or https://",
        ),
        ("[agent\n", "is not valid TOML"),
        ("[reprt]\n", "unknown setting reprt; did you mean report?"),
    ],
)
def test_mistakes_are_one_line_errors_that_name_the_setting(tmp_path, text, message):
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})

    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(
        ConfigError, match="WATTLEDGER_AGENT_EXPORT_INTERVAL_S='soon' is not a valid float"
    ):
        load_config(write(tmp_path, ""), environ={"WATTLEDGER_AGENT_EXPORT_INTERVAL_S": "soon"})


def test_an_explicit_config_path_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("agent = 5\n", "agent should be a table ([agent]), not 5"),
        ('report = "x"\n', "report should be a table ([report]), not 'x'"),
        ("db = 3\n", "db should be a database URL string, not 3"),
        ("[agent]\nendpoints = 3\n", "agent.endpoints should be a list of tables"),
        ("[agent]\nsample_interval_s = nan\n", "agent.sample_interval_s must be a finite number"),
        ("[agent]\nexport_interval_s = inf\n", "agent.export_interval_s must be a finite number"),
        ('[agent]\nnode = ""\n', "agent.node must not be empty"),
        ("[agent]\nspool_max_mb = -1\n", "agent.spool_max_mb must not be negative"),
        ('[report]\ncurrency = "EUR"\n', "report.currency 'EUR' is not supported; only USD is"),
        ("[collector]\nmax_body_mb = 0\n", "collector.max_body_mb must be above zero, not 0"),
        ("[collector]\nmax_points = -5\n", "collector.max_points must be above zero, not -5"),
        (
            '[collector]\nlisten = "127.0.0.1:99999"\n',
            "collector.listen '127.0.0.1:99999': port 99999 is out of range; use 1 to 65535",
        ),
        ('[collector]\nlisten = "127.0.0.1"\n', "collector.listen '127.0.0.1' must be HOST:PORT"),
        (
            '[[agent.endpoints]]\nname = "a"\nurl = "http://x/metrics"\ntimeout_s = 0\n',
            "agent.endpoints 'a': timeout_s must be above zero",
        ),
    ],
)
def test_wrong_shapes_and_out_of_range_values_are_one_line_errors(tmp_path, text, message):
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})

    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_config_file_that_is_not_utf8_is_a_one_line_error(tmp_path):
    path = tmp_path / "wattledger.toml"
    path.write_bytes(b'[agent]\nnode = "caf\xe9"\n')

    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 19\); save it as UTF-8"):
        load_config(path, environ={})


def test_a_config_path_that_is_a_directory_says_so(tmp_path):
    with pytest.raises(ConfigError, match=f"config file {tmp_path} is a directory"):
        load_config(tmp_path, environ={})


def test_a_missing_file_named_by_the_environment_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; check --config or WATTLEDGER_CONFIG"):
        load_config(None, environ={"WATTLEDGER_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "WATTLEDGER_AGENT_SAMPLE_INTERVAL_S",
            "nan",
            "WATTLEDGER_AGENT_SAMPLE_INTERVAL_S='nan' must be a finite number",
        ),
        (
            "WATTLEDGER_AGENT_ENDPOINTS",
            "http://127.0.0.1:8000/metrics",
            "agent.endpoints is a list of tables and cannot come from the environment; "
            "write [[agent.endpoints]] tables in the config file",
        ),
        (
            "WATTLEDGER_COLLECTOR_LISTEN",
            "127.0.0.1:99999",
            "port 99999 is out of range",
        ),
        ("WATTLEDGER_COLLECTOR_MAX_BODY_MB", "-1", "collector.max_body_mb must be above zero"),
        ("WATTLEDGER_AGENT_NODE", "", "agent.node must not be empty"),
        ("WATTLEDGER_REPORT_CURRENCY", "EUR", "report.currency 'EUR' is not supported"),
        (
            "WATTLEDGER_AGENT_SAMPEL_INTERVAL_S",
            "1",
            "unknown environment variable WATTLEDGER_AGENT_SAMPEL_INTERVAL_S; "
            "did you mean WATTLEDGER_AGENT_SAMPLE_INTERVAL_S?",
        ),
        (
            "WATTLEDGER_COLLECTOR_PORT",
            "1",
            "unknown environment variable WATTLEDGER_COLLECTOR_PORT",
        ),
        ("WATTLEDGER_REPORT_X", "1", "unknown environment variable WATTLEDGER_REPORT_X"),
        ("WATTLEDGER_AGENT_TAGS", "team", "WATTLEDGER_AGENT_TAGS='team' is not a valid KEY=VALUE"),
    ],
)
def test_bad_environment_variables_are_one_line_errors(tmp_path, variable, value, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""), environ={variable: value})

    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_other_wattledger_variables_are_left_alone(tmp_path):
    config = load_config(
        write(tmp_path, ""),
        environ={"WATTLEDGER_SLOW": "1", "WATTLEDGER_TEST_PG": "x", "WATTLEDGER_AGENTS": "3"},
    )

    assert config.collector.listen == "127.0.0.1:4318"
