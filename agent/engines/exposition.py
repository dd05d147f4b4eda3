"""Prometheus text and OpenMetrics pages in, samples out, without one bad line spoiling the rest.

Parsing itself is ``prometheus_client``'s. This module only decides what to hand it and what to
do when it refuses:

* The page is cut into family blocks (a ``# HELP``/``# TYPE`` header and the samples that follow
  it, or a run of samples with no header). Blocks of families no engine table reads are skipped.
* Kept blocks go to the library in one call. If it rejects them, each block is parsed alone, and
  inside a rejected block each line is parsed alone with the block's header. Lines it still
  rejects are skipped and counted in ``parse_errors``; everything else is kept.
* Histogram buckets are thinned before parsing: only the lowest bucket of each series and the
  ``+Inf`` bucket are kept. Nothing downstream reads a bucket distribution, and buckets are most
  of a page's bytes (a 30-bucket histogram is 33 lines, 3 of which carry ``_sum``/``_count``).
* A page whose last line is ``# EOF`` goes to the strict OpenMetrics parser first, and through
  the tolerant path above if that parser rejects it.

What a page *does not* say is recorded too: families declared with no samples (absent, not
zero), histograms with no ``_count`` (a cut page), a last line with no newline (possibly cut in
the middle of a number, so it is dropped rather than read as a smaller value).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families
from prometheus_client.samples import Sample

from wattledger.agent.engines.errors import EmptyPayload

logger = logging.getLogger(__name__)

# Sample-name endings that still belong to the family named in the block's header.
FAMILY_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created", "_gsum", "_gcount", "_info")
INF_BUCKET = 'le="+Inf"'
NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")
SAMPLE_NAME = re.compile(r"[^{ \t]*")
PARSE_FAILURES = (ValueError, IndexError, KeyError, TypeError)


@dataclass
class ParsedPayload:
    """The samples of one page, indexed by sample name, and what the page failed to say."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)
    families: set[str] = field(default_factory=set)
    empty_families: list[str] = field(default_factory=list)
    parse_errors: int = 0
    notes: list[str] = field(default_factory=list)
    openmetrics: bool = False

    def get(self, name: str) -> list[Sample]:
        return self.samples.get(name, [])

    def has(self, name: str) -> bool:
        return bool(self.samples.get(name))

    def add(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            self.samples.setdefault(sample.name, []).append(sample)


@dataclass
class _Block:
    name: str
    declared: bool
    headers: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # the sample name of each line
    histogram_parts: bool = False
    has_count: bool = False


def parse_exposition(text: str, wanted: Callable[[str], bool] | None = None) -> ParsedPayload:
    """Parse a metrics page, keeping every line the library accepts.

    ``wanted`` says which family (or, for samples with no header, which sample) names to parse;
    ``None`` parses everything. Raises :class:`EmptyPayload` for a page with no content.
    """
    if not text or not text.strip():
        raise EmptyPayload("the metrics page is empty: a failed scrape, not zero traffic")

    parsed = ParsedPayload()
    text = _unwrap_json_string(text, parsed)

    if _ends_with_eof(text):
        text = _restore_escaped_names(text, parsed)
        if _parse_openmetrics(text, parsed, wanted):
            return parsed

    blocks = _split_blocks(text, parsed)
    # Limitation: lines of families no table reads, and the interior buckets thinned away, are
    # never given to the library, so a malformed line among them is not counted in parse_errors.
    kept = [block for block in blocks if wanted is None or _is_wanted(block, wanted)]
    for block in kept:
        if block.declared and not block.lines:
            parsed.empty_families.append(block.name)
    _parse_blocks([block for block in kept if block.lines], parsed)
    _note_cut_histograms(blocks, parsed)
    return parsed


def _unwrap_json_string(text: str, parsed: ParsedPayload) -> str:
    """Undo a page served as one JSON string (llama.cpp builds around 7010, issue #17384)."""
    stripped = text.strip()
    if len(stripped) < 2 or stripped[0] != '"' or stripped[-1] != '"':
        return text
    try:
        decoded = json.loads(stripped)
    except ValueError:
        return text
    if not isinstance(decoded, str):
        return text
    parsed.notes.append(
        "the page was served as a JSON-quoted string (llama.cpp #17384); decoded before parsing"
    )
    return decoded


_OM_SUFFIXES = ("", "_total", "_created", "_bucket", "_count", "_sum", "_info", "_gcount", "_gsum")


def _restore_escaped_names(text: str, parsed: ParsedPayload) -> str:
    """Give samples back the ``:`` their family's header has.

    ``prometheus_client`` 0.26 answers an OpenMetrics request for ``vllm:prompt_tokens`` with the
    header name intact but the samples escaped to ``vllm_prompt_tokens_total``; the strict parser
    then rejects every such sample, and a whole vLLM, SGLang or llama.cpp page reads as empty.
    """
    escaped: dict[str, str] = {}
    for match in re.finditer(r"^# TYPE (\S+) ", text, flags=re.MULTILINE):
        name = match.group(1)
        if ":" in name:
            escaped[name.replace(":", "_")] = name
    if not escaped:
        return text

    restored = 0
    lines = text.split("\n")
    for i, line in enumerate(lines):
        match = SAMPLE_NAME.match(line) if line and not line.startswith("#") else None
        if match is None:
            continue
        sample = match.group(0)
        for suffix in _OM_SUFFIXES:
            base = sample[: len(sample) - len(suffix)] if suffix else sample
            if (not suffix or sample.endswith(suffix)) and base in escaped:
                lines[i] = escaped[base] + suffix + line[len(sample) :]
                restored += 1
                break
    if restored:
        parsed.notes.append(
            f"{restored} OpenMetrics sample names had ':' escaped to '_' "
            "(prometheus_client 0.26); restored"
        )
    return "\n".join(lines)


def _ends_with_eof(text: str) -> bool:
    return text.rstrip().endswith("# EOF")


def _parse_openmetrics(
    text: str, parsed: ParsedPayload, wanted: Callable[[str], bool] | None
) -> bool:
    try:
        families = list(openmetrics_families(text))
    except PARSE_FAILURES as exc:
        parsed.notes.append(
            f"the page ends with '# EOF' but is not valid OpenMetrics ({str(exc)[:100]}); "
            "read it as Prometheus text, line by line"
        )
        return False

    parsed.openmetrics = True
    for family in families:
        parsed.families.add(family.name)
        if wanted is not None and not wanted(family.name):
            continue
        if not family.samples:
            parsed.empty_families.append(family.name)
        parsed.add(family.samples)
    return True


def _split_blocks(text: str, parsed: ParsedPayload) -> list[_Block]:
    """Cut the page into family blocks; count lines that cannot be metric lines at all."""
    lines = text.split("\n")
    if not text.endswith("\n"):
        last = lines.pop()
        if last.strip() and not last.lstrip().startswith("#"):
            parsed.parse_errors += 1
            parsed.notes.append(
                f"the last line has no newline and may be cut mid-value; skipped: {last[:80]!r}"
            )

    blocks: list[_Block] = []
    current: _Block | None = None
    last_content = ""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                continue  # a plain comment, '# EOF' or '# UNIT'
            last_content = line
            name = parts[2]
            parsed.families.add(name)
            if current is None or not current.declared or current.name != name:
                current = _Block(name, declared=True)
                blocks.append(current)
            current.headers.append(line)
            continue

        last_content = line
        if line[0] not in NAME_START:
            parsed.parse_errors += 1
            logger.debug("skipped a line that is not a metric line: %.80s", line)
            continue
        sample_name = _sample_name(line)
        if current is None or not _belongs(sample_name, current):
            base = _family_of(sample_name)
            parsed.families.add(base)
            current = _Block(base, declared=False)
            blocks.append(current)
        current.lines.append(line)
        current.names.append(sample_name)
        if sample_name.endswith("_count"):
            current.has_count = True
        elif sample_name.endswith("_bucket") or sample_name.endswith("_sum"):
            current.histogram_parts = True

    if last_content.startswith("#"):
        parsed.notes.append(
            f"the page ends with a declaration and no samples ({last_content[:60]!r}); "
            "it may have been cut"
        )
    return blocks


def _sample_name(line: str) -> str:
    return SAMPLE_NAME.match(line).group(0)


def _belongs(sample_name: str, block: _Block) -> bool:
    if sample_name == block.name:
        return True
    if not sample_name.startswith(block.name):
        # A header may name a counter with its '_total' (text format) or without (OpenMetrics).
        return block.name.endswith("_total") and sample_name == block.name[: -len("_total")]
    return sample_name[len(block.name) :] in FAMILY_SUFFIXES


def _family_of(sample_name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix):
            return sample_name[: -len(suffix)]
    return sample_name


def _is_wanted(block: _Block, wanted: Callable[[str], bool]) -> bool:
    if wanted(block.name):
        return True
    # Samples with no header: the block is named after its family, the table may name the sample.
    return not block.declared and bool(block.names) and wanted(block.names[0])


def _thin_buckets(block: _Block) -> list[str]:
    """Keep each series' lowest bucket and its +Inf bucket; drop the buckets in between."""
    # Limitation: a series' lowest bucket is the first of a run of bucket lines; an exporter
    # that interleaves the buckets of several series keeps only the first series' lowest one,
    # which only weakens the "every observation in the lowest bucket" check.
    kept = []
    previous_was_bucket = False
    for line, name in zip(block.lines, block.names, strict=True):
        is_bucket = name.endswith("_bucket")
        if not is_bucket or not previous_was_bucket or INF_BUCKET in line:
            kept.append(line)
        previous_was_bucket = is_bucket
    return kept


def _block_text(block: _Block) -> str:
    return "\n".join(block.headers + _thin_buckets(block)) + "\n"


def _parse_blocks(blocks: list[_Block], parsed: ParsedPayload) -> None:
    texts = [_block_text(block) for block in blocks]
    try:
        parsed.add(_samples_of("".join(texts)))
        return
    except PARSE_FAILURES:
        logger.debug("the library rejected the page; parsing family by family")

    for block, block_text in zip(blocks, texts, strict=True):
        try:
            parsed.add(_samples_of(block_text))
        except PARSE_FAILURES:
            _parse_lines(block, parsed)


def _parse_lines(block: _Block, parsed: ParsedPayload) -> None:
    """Parse a rejected block one line at a time, keeping each header that parses alone."""
    headers = []
    for header in block.headers:
        try:
            _samples_of(header + "\n")
            headers.append(header)
        except PARSE_FAILURES:
            parsed.parse_errors += 1
            parsed.notes.append(f"skipped a malformed header line: {header[:80]!r}")

    bad = 0
    for line in _thin_buckets(block):
        try:
            parsed.add(_samples_of("\n".join(headers + [line]) + "\n"))
        except PARSE_FAILURES:
            bad += 1
            logger.debug("skipped a malformed line: %.80s", line)
    if bad:
        parsed.parse_errors += bad
        parsed.notes.append(f"skipped {bad} malformed line(s) in family {block.name}")


def _samples_of(text: str) -> list[Sample]:
    samples: list[Sample] = []
    for family in text_families(text):
        samples.extend(family.samples)
    return samples


def _note_cut_histograms(blocks: list[_Block], parsed: ParsedPayload) -> None:
    """Name histograms with buckets or a sum but no ``_count``: the page was cut inside them."""
    for block in blocks:
        if block.histogram_parts and not block.has_count:
            parsed.notes.append(
                f"histogram {block.name} has no _count or +Inf bucket: the page was cut"
            )
