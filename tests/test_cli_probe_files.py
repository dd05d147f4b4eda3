"""``agent probe --file`` on files that are not metrics pages: one line, no file contents."""

import pytest
from click.testing import CliRunner

from wattledger.cli.main import cli
from wattledger.cli.page_kind import page_kind

SECRET = "root:$6$saltsalt$hashhashhash:19000:0:99999:7:::"


def probe(path):
    return CliRunner().invoke(cli, ["agent", "probe", "--file", str(path)])


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (f"{SECRET}\ndaemon:*:19000:0:99999:7:::\n", "plain text (2 lines), not metrics"),
        ("<!DOCTYPE html><html><body>" + SECRET + "</body></html>", "an HTML or XML document"),
        ('{"password": "' + SECRET + '"}', "JSON"),
        (
            '# TYPE secret_total counter\nsecret_total 3\nother_metric{a="b"} 1.5\n',
            "Prometheus metrics of another program (2 metric families, none from vllm, sglang, "
            "trtllm, triton, dynamo, tgi, llamacpp)",
        ),
    ],
)
def test_a_file_of_another_kind_is_named_without_echoing_it(tmp_path, content, kind):
    path = tmp_path / "page.txt"
    path.write_text(content)

    result = probe(path)

    assert result.exit_code == 1
    assert result.output == (
        f"Error: {path} is not an engine metrics page: it looks like {kind}; save the page an "
        "engine serves, e.g. curl -s http://127.0.0.1:8000/metrics > page.txt\n"
    )
    assert "hashhash" not in result.output and "secret" not in result.output


def test_binary_and_empty_files_are_named(tmp_path):
    binary = tmp_path / "ls"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    empty = tmp_path / "empty.txt"
    empty.write_text("")

    assert probe(binary).output == (
        f"Error: {binary} is not an engine metrics page: it looks like binary data; "
        "check the path\n"
    )
    assert probe(empty).output == f"Error: {empty} is empty; give a saved metrics page\n"


def test_a_file_larger_than_a_page_is_read_no_further_than_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr("wattledger.cli.probe.MAX_PAGE_BYTES", 1024)
    reads = []
    real_open = type(tmp_path).open

    def counting_open(self, *args, **kwargs):
        stream = real_open(self, *args, **kwargs)
        real_read = stream.read
        stream.read = lambda size=-1: reads.append(size) or real_read(size)
        return stream

    monkeypatch.setattr(type(tmp_path), "open", counting_open)
    path = tmp_path / "big.prom"
    with real_open(path, "w") as stream:
        stream.write("vllm:num_requests_running 1\n" * 1000)  # 28,000 bytes

    result = probe(path)

    assert result.exit_code == 1
    assert result.output == (
        f"Error: {path} is larger than 0 MB, the most a metrics page may be; it is not one: "
        "check the path\n"
    )
    assert reads == [1025]


def test_dev_zero_is_refused_without_reading_it_all():
    result = probe("/dev/zero")

    assert result.exit_code == 1
    assert result.output == (
        "Error: /dev/zero is larger than 32 MB, the most a metrics page may be; it is not one: "
        "check the path\n"
    )


def test_page_kind_of_a_single_line():
    assert page_kind("hello\n") == "plain text (1 line), not metrics"
