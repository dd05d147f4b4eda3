"""Writing FOCUS rows as CSV or Parquet: aside first, then renamed into place.

A reader never sees half a file: the rows go to a hidden temporary file in the target's
directory, which is flushed to disk and then renamed over the target in one step. The bytes
depend on the rows alone (no timestamps, no random names inside), so the same rows give the same
file, byte for byte, every time.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from wattledger.cli.chargeback.focus import COLUMN_NAMES, SCHEMA
from wattledger.errors import WattledgerError

logger = logging.getLogger(__name__)

FORMATS = ("csv", "parquet")


class ExportWriteError(WattledgerError):
    exit_code = 1


class ExportFormatError(WattledgerError):
    """The file name and the format asked for do not agree."""

    exit_code = 2


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    sha256: str
    size: int


def format_for(path: Path, explicit: str | None) -> str:
    """The file format: the one the name's extension says, which ``explicit`` must agree with.

    A name without an extension takes ``explicit``, else CSV. A name whose extension is another
    format (``.xlsx``), or that disagrees with ``explicit``, is refused: a finance tool opens a
    file by its name, and a CSV called ``.xlsx`` or Parquet called ``.csv`` would not load.
    """
    suffix = path.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        if explicit and explicit != suffix:
            raise ExportFormatError(
                f"--out {path.name} is named .{suffix} but --format is {explicit}; "
                f"name the file .{explicit}, or leave out --format"
            )
        return suffix
    if suffix:
        raise ExportFormatError(
            f"--out {path.name}: .{suffix} is not an export format; name the file .csv or .parquet"
        )
    return explicit or "csv"


def write_rows(rows: Sequence[dict], path: Path, fmt: str) -> WrittenFile:
    """Write ``rows`` to ``path`` atomically; returns the file's checksum and size."""
    if fmt not in FORMATS:
        raise ExportWriteError(f"unknown export format {fmt!r}; use {' or '.join(FORMATS)}")
    path = path.expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportWriteError(f"cannot create directory {path.parent}: {exc.strerror}") from None

    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        if fmt == "csv":
            _write_csv(rows, aside)
        else:
            _write_parquet(rows, aside)
        _sync(aside)
        os.replace(aside, path)
        _sync_directory(path.parent)
    except OSError as exc:
        aside.unlink(missing_ok=True)
        raise ExportWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        aside.unlink(missing_ok=True)
        raise

    data = path.read_bytes()
    logger.info("wrote %d rows to %s", len(rows), path)
    return WrittenFile(path, hashlib.sha256(data).hexdigest(), len(data))


def _write_csv(rows: Sequence[dict], target: Path) -> None:
    with target.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(COLUMN_NAMES)
        for row in rows:
            writer.writerow([_csv_value(row[name]) for name in COLUMN_NAMES])


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _write_parquet(rows: Sequence[dict], target: Path) -> None:
    table = pa.Table.from_pylist(list(rows), schema=SCHEMA)
    pq.write_table(table, target, compression="zstd")


def _sync(path: Path) -> None:
    with path.open("rb") as stream:
        os.fsync(stream.fileno())


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
