"""Readers for saved GPU telemetry: ``nvidia-smi -q`` (text and XML) and dcgm-exporter pages.

The agent reads NVML directly; these readers exist to check its board knowledge (SKU,
architecture, power limits, idle power) against what real boards printed, and to state one rule
of dcgm-exporter payloads: with MIG on, the parent's power and energy are repeated on every
``GPU_I_ID`` series and must be counted once per GPU UUID.

Field names follow driver 535+ (``gpu_power_readings``, ``average_power_draw``); the older
``power_readings``/``power_draw`` names are accepted too.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class BoardCapture:
    """One GPU as ``nvidia-smi -q`` described it."""

    name: str
    architecture: str | None
    uuid: str | None
    serial: str | None
    average_power_w: float | None
    instant_power_w: float | None
    max_power_limit_w: float | None
    min_power_limit_w: float | None
    module_average_power_w: float | None
    module_max_power_limit_w: float | None
    module_min_power_limit_w: float | None
    memory_total_mib: float | None
    mig_enabled: bool


def number(text: str | None) -> float | None:
    """The leading number of ``195.68 W`` or ``183359 MiB``; None for ``N/A`` and the like."""
    if text is None:
        return None
    match = _NUMBER.match(text)
    return float(match.group(1)) if match else None


# ------------------------------------------------------------------ XML (-q -x)


def read_smi_xml(source: str | Path) -> list[BoardCapture]:
    """Every ``<gpu>`` of an ``nvidia-smi -q -x`` document."""
    text = Path(source).read_text() if isinstance(source, Path) else source
    root = ET.fromstring(text)
    return [_board_from_xml(gpu) for gpu in root.findall("gpu")]


def _board_from_xml(gpu: ET.Element) -> BoardCapture:
    power = gpu.find("gpu_power_readings")
    if power is None:
        power = gpu.find("power_readings")
    module = gpu.find("module_power_readings")

    def power_value(block: ET.Element | None, *names: str) -> float | None:
        if block is None:
            return None
        for name in names:
            value = number(block.findtext(name))
            if value is not None:
                return value
        return None

    return BoardCapture(
        name=gpu.findtext("product_name", "").strip(),
        architecture=gpu.findtext("product_architecture"),
        uuid=gpu.findtext("uuid"),
        serial=gpu.findtext("serial"),
        average_power_w=power_value(power, "average_power_draw", "power_draw"),
        instant_power_w=power_value(power, "instant_power_draw"),
        max_power_limit_w=power_value(power, "max_power_limit"),
        min_power_limit_w=power_value(power, "min_power_limit"),
        module_average_power_w=power_value(module, "average_power_draw"),
        module_max_power_limit_w=power_value(module, "max_power_limit"),
        module_min_power_limit_w=power_value(module, "min_power_limit"),
        memory_total_mib=number(gpu.findtext("fb_memory_usage/total")),
        mig_enabled=(gpu.findtext("mig_mode/current_mig") or "").strip() == "Enabled",
    )


# --------------------------------------------------------------- text (-q)


def parse_query_text(text: str) -> dict[str, Any]:
    """``nvidia-smi -q`` text as nested dicts; a key seen twice at one level becomes a list."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("=") or line.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        key, colon, value = line.strip().partition(" :")  # "GPU 00000000:1A:00.0" is a header
        key = key.strip()
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if colon and value.strip():
            _put(parent, key, value.strip())
            continue
        child: dict[str, Any] = {}
        _put(parent, key, child)
        stack.append((indent, child))
    return root


def _put(parent: dict[str, Any], key: str, value: Any) -> None:
    if key not in parent:
        parent[key] = value
    elif isinstance(parent[key], list):
        parent[key].append(value)
    else:
        parent[key] = [parent[key], value]


def read_smi_query_text(text: str) -> list[BoardCapture]:
    """Every GPU block (``GPU 00000000:1A:00.0``) of ``nvidia-smi -q`` text."""
    boards = []
    for key, block in parse_query_text(text).items():
        blocks = block if isinstance(block, list) else [block]
        if not key.startswith("GPU "):
            continue
        boards.extend(_board_from_text(b) for b in blocks if isinstance(b, dict))
    return boards


def _board_from_text(block: dict[str, Any]) -> BoardCapture:
    power = block.get("GPU Power Readings") or block.get("Power Readings") or {}
    module = block.get("Module Power Readings") or {}
    memory = block.get("FB Memory Usage") or {}
    mig = block.get("MIG Mode") or {}
    return BoardCapture(
        name=block.get("Product Name", ""),
        architecture=block.get("Product Architecture"),
        uuid=block.get("GPU UUID"),
        serial=block.get("Serial Number"),
        average_power_w=number(power.get("Average Power Draw") or power.get("Power Draw")),
        instant_power_w=number(power.get("Instantaneous Power Draw")),
        max_power_limit_w=number(power.get("Max Power Limit")),
        min_power_limit_w=number(power.get("Min Power Limit")),
        module_average_power_w=number(module.get("Average Power Draw")),
        module_max_power_limit_w=number(module.get("Max Power Limit")),
        module_min_power_limit_w=number(module.get("Min Power Limit")),
        memory_total_mib=number(memory.get("Total")),
        mig_enabled=isinstance(mig, dict) and mig.get("Current") == "Enabled",
    )


_BANNER = re.compile(r"^#{20,}\s*$")


def capture_sections(text: str) -> dict[str, str]:
    """Sections of an nvidia_gpu_exporter capture file, by title (``idle :: query (-q)``)."""
    sections: dict[str, list[str]] = {}
    lines = text.splitlines()
    current: list[str] | None = None
    i = 0
    while i < len(lines):
        if _BANNER.match(lines[i]):
            j = i + 1
            titles = []
            while j < len(lines) and not _BANNER.match(lines[j]):
                titles.append(lines[j])
                j += 1
            if titles and all(t.startswith("#") for t in titles):
                title = titles[0].lstrip("# ").strip()
                current = sections.setdefault(title, [])
                i = j + 1
                continue
        if current is not None:
            current.append(lines[i])
        i += 1
    return {title: "\n".join(body) for title, body in sections.items()}


_MIG_LINE = re.compile(r"^\s+MIG\s+(\S+)\s+Device\s+(\d+):\s+\(UUID:\s*(MIG-[^)\s]+)\)")


def read_mig_list(text: str) -> list[tuple[str, str]]:
    """(profile, MIG UUID) pairs from ``nvidia-smi -L`` output."""
    return [(m.group(1), m.group(3)) for m in map(_MIG_LINE.match, text.splitlines()) if m]


# ------------------------------------------------------------ dcgm-exporter


@dataclass(frozen=True)
class DcgmSample:
    name: str
    labels: dict[str, str]
    value: float | None  # None where the exporter printed an error instead of a number

    def label(self, name: str) -> str | None:
        """A label by name, matched case-insensitively (``Hostname`` vs ``hostname``)."""
        wanted = name.lower()
        for key, value in self.labels.items():
            if key.lower() == wanted:
                return value
        return None


@dataclass(frozen=True)
class DcgmGpu:
    """One physical GPU of a dcgm-exporter page, repeated MIG series folded into one."""

    uuid: str
    model: str | None
    power_w: float | None
    energy_mj: float | None
    gpu_instances: tuple[str, ...]


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(.*?)\s*$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')

POWER_METRICS = ("DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_BOARD_POWER_WATTS")
ENERGY_METRICS = ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",)


def read_dcgm(text: str) -> list[DcgmSample]:
    samples = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, raw = match.groups()
        try:
            value: float | None = float(raw.split()[0]) if raw else None
        except ValueError:
            value = None
        samples.append(DcgmSample(name, dict(_LABEL.findall(labels or "")), value))
    return samples


def dcgm_gpus(samples: list[DcgmSample]) -> dict[str, DcgmGpu]:
    """One entry per GPU UUID; power and energy counted once however many MIG series repeat them.

    The energy counter repeated per ``GPU_I_ID`` is one register read at slightly different
    moments, so the largest (latest) value stands for the GPU; the power gauge is taken from the
    first series, as a gauge repeated is still one reading.
    """
    power: dict[str, float] = {}
    energy: dict[str, float] = {}
    models: dict[str, str | None] = {}
    instances: dict[str, list[str]] = {}
    for sample in samples:
        uuid = sample.label("UUID")
        if not uuid:
            continue
        models.setdefault(uuid, sample.label("modelName"))
        instance = sample.label("GPU_I_ID")
        if instance is not None and instance not in instances.setdefault(uuid, []):
            instances[uuid].append(instance)
        if sample.value is None:
            continue
        if sample.name in POWER_METRICS:
            power.setdefault(uuid, sample.value)
        elif sample.name in ENERGY_METRICS:
            energy[uuid] = max(energy.get(uuid, sample.value), sample.value)
    return {
        uuid: DcgmGpu(
            uuid, models[uuid], power.get(uuid), energy.get(uuid), tuple(instances.get(uuid, ()))
        )
        for uuid in models
    }
