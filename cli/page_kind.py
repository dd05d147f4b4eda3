"""What a file that is not an engine metrics page looks like, in a few words.

``agent probe --file`` names the kind of a wrong file (binary data, HTML, JSON, another
program's Prometheus metrics, plain text) without quoting it: the file may be anything a person
points it at, secrets included, and a message must not echo its lines.
"""

from __future__ import annotations

import re

from wattledger.contract import ENGINES

# One sample line of the Prometheus text format: a metric name, optional labels, a number.
_SAMPLE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+[-+]?(\d|\.\d|NaN|Inf)", re.IGNORECASE
)
_TYPE = re.compile(r"^#\s*TYPE\s+([a-zA-Z_:][a-zA-Z0-9_:]*)\s")


def is_binary(data: bytes) -> bool:
    return b"\x00" in data[:65_536]


def page_kind(text: str) -> str:
    """A short description of ``text`` that quotes none of it."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        return "an empty file"
    lines = stripped.splitlines()
    head = stripped[:512].lower()
    if head.startswith("<") and ("<html" in head or "<!doctype" in head or "<?xml" in head):
        return "an HTML or XML document"
    if head.startswith(("{", "[")):
        return "JSON"
    families = {m.group(1) for line in lines if (m := _TYPE.match(line) or _SAMPLE.match(line))}
    if families:
        return (
            f"Prometheus metrics of another program ({len(families)} metric "
            f"{'family' if len(families) == 1 else 'families'}, none from {', '.join(ENGINES)})"
        )
    return f"plain text ({len(lines)} {'line' if len(lines) == 1 else 'lines'}), not metrics"
