"""Charge lines as FOCUS 1.2 Cost and Usage rows.

Every row is a ``Usage`` charge in the billing currency, priced per GPU-hour: ``PricingQuantity``
is the GPU-hours the line is charged for and ``ListUnitPrice`` the blended price of one (GPU time
plus energy, plus any shared idle time, so ``ListUnitPrice x PricingQuantity`` is the cost). An
internal fleet has no discounts or commitments, so the list, contracted, effective and billed
costs are one figure, and no row belongs to an invoice (``InvoiceId`` is null): a chargeback
allocates cost, it does not bill it. ``ConsumedQuantity`` is the tokens a line served.

The cost centre is the sub-account and a provider tag (``wattledger/cost-centre``); the agents'
own tags are carried unprefixed, as the one user-defined tag scheme. wattledger's own figures come
after the FOCUS columns with the ``x_`` prefix.

Amounts are decimals with fixed places: dollars to 1e-10, unit prices to 1e-16, GPU-hours and
kWh to 1e-9, tokens to 1e-6. A row's rounding is below 1e-10 USD, so a file's total matches the
cost report to the cent however many rows it has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal

import pyarrow as pa

from wattledger.cli.chargeback.allocation import IDLE, SERVING, Line
from wattledger.cli.chargeback.periods import month_of
from wattledger.cli.chargeback.settings import ChargebackSettings

SERVICE_CATEGORY = "AI and Machine Learning"
SERVICE_SUBCATEGORY = "Generative AI"
PRICING_UNIT = "GPU-Hours"
CONSUMED_UNIT = "Tokens"
CENTRE_TAG = "wattledger/cost-centre"
J_PER_KWH = 3_600_000

MONEY = pa.decimal128(28, 10)
UNIT_PRICE = pa.decimal128(28, 16)
HOURS = pa.decimal128(28, 9)
TOKENS = pa.decimal128(28, 6)
TIME = pa.timestamp("ms", tz="UTC")
TEXT = pa.string()
# Wide enough that no amount written here is ever rounded by the context, only by its column.
ARITHMETIC = Context(prec=60, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class FocusColumn:
    name: str
    type: pa.DataType

    @property
    def places(self) -> int | None:
        return self.type.scale if pa.types.is_decimal(self.type) else None


COLUMNS = (
    FocusColumn("BilledCost", MONEY),
    FocusColumn("BillingAccountId", TEXT),
    FocusColumn("BillingAccountName", TEXT),
    FocusColumn("BillingCurrency", TEXT),
    FocusColumn("BillingPeriodEnd", TIME),
    FocusColumn("BillingPeriodStart", TIME),
    FocusColumn("ChargeCategory", TEXT),
    FocusColumn("ChargeClass", TEXT),
    FocusColumn("ChargeDescription", TEXT),
    FocusColumn("ChargeFrequency", TEXT),
    FocusColumn("ChargePeriodEnd", TIME),
    FocusColumn("ChargePeriodStart", TIME),
    FocusColumn("ConsumedQuantity", TOKENS),
    FocusColumn("ConsumedUnit", TEXT),
    FocusColumn("ContractedCost", MONEY),
    FocusColumn("EffectiveCost", MONEY),
    FocusColumn("InvoiceId", TEXT),
    FocusColumn("InvoiceIssuerName", TEXT),
    FocusColumn("ListCost", MONEY),
    FocusColumn("ListUnitPrice", UNIT_PRICE),
    FocusColumn("PricingCategory", TEXT),
    FocusColumn("PricingQuantity", HOURS),
    FocusColumn("PricingUnit", TEXT),
    FocusColumn("ProviderName", TEXT),
    FocusColumn("PublisherName", TEXT),
    FocusColumn("RegionId", TEXT),
    FocusColumn("RegionName", TEXT),
    FocusColumn("ResourceId", TEXT),
    FocusColumn("ResourceName", TEXT),
    FocusColumn("ResourceType", TEXT),
    FocusColumn("ServiceCategory", TEXT),
    FocusColumn("ServiceName", TEXT),
    FocusColumn("ServiceSubcategory", TEXT),
    FocusColumn("SubAccountId", TEXT),
    FocusColumn("SubAccountName", TEXT),
    FocusColumn("Tags", TEXT),
    FocusColumn("x_ChargeKind", TEXT),
    FocusColumn("x_CostCentre", TEXT),
    FocusColumn("x_Node", TEXT),
    FocusColumn("x_GpuSku", TEXT),
    FocusColumn("x_GpuArchitecture", TEXT),
    FocusColumn("x_GpuHours", HOURS),
    FocusColumn("x_EnergyKWh", HOURS),
    FocusColumn("x_InputTokens", TOKENS),
    FocusColumn("x_OutputTokens", TOKENS),
    FocusColumn("x_SharedIdleCost", MONEY),
    FocusColumn("x_UsdPerMillionTokens", MONEY),
)
COLUMN_NAMES = tuple(column.name for column in COLUMNS)
SCHEMA = pa.schema([pa.field(column.name, column.type) for column in COLUMNS])
_PLACES = {column.name: column.places for column in COLUMNS}


def focus_rows(
    lines: list[Line], settings: ChargebackSettings, since: int, until: int, period_seconds: int
) -> list[dict]:
    """One FOCUS row per charge line, in the lines' order, clipped to ``[since, until)``."""
    return [_row(line, settings, since, until, period_seconds) for line in lines]


def _row(
    line: Line, settings: ChargebackSettings, since: int, until: int, period_seconds: int
) -> dict:
    account = settings.account
    start = max(line.period_start, since)
    end = min(line.period_start + period_seconds, until)
    billing_start, billing_end = month_of(start)

    # Limitation: ListUnitPrice is the line's blended price per GPU-hour (GPU time, energy and any
    # shared idle), not an entry of the price book, and there are no SkuId or SkuPriceId columns:
    # rows may span a price change, so they name no single price-list entry.
    cost = _fixed(line.cost_usd, "BilledCost")
    gpu_hours = _fixed(line.gpu_seconds / 3600.0, "PricingQuantity")
    if gpu_hours:
        unit_price = _quantize(ARITHMETIC.divide(cost, gpu_hours), "ListUnitPrice")
    else:
        unit_price = _fixed(0.0, "ListUnitPrice")
    tokens = line.input_tokens + line.output_tokens
    # Tokens on GPUs nobody knows carry no cost: a price per token that counted them would be low.
    priced_per_token = tokens and not line.unmapped_tokens > 0
    per_mtok = (
        _fixed(line.cost_usd / tokens * 1e6, "x_UsdPerMillionTokens") if priced_per_token else None
    )
    tags = {**line.tags, CENTRE_TAG: line.centre}

    return {
        "BilledCost": cost,
        "BillingAccountId": account.billing_account_id,
        "BillingAccountName": account.billing_account_name,
        "BillingCurrency": account.currency,
        "BillingPeriodEnd": _time(billing_end),
        "BillingPeriodStart": _time(billing_start),
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ChargeDescription": _description(line),
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": _time(end),
        "ChargePeriodStart": _time(start),
        "ConsumedQuantity": _fixed(tokens, "ConsumedQuantity"),
        "ConsumedUnit": CONSUMED_UNIT,
        "ContractedCost": cost,
        "EffectiveCost": cost,
        "InvoiceId": None,
        "InvoiceIssuerName": account.invoice_issuer_name,
        "ListCost": cost,
        "ListUnitPrice": unit_price,
        "PricingCategory": "Standard",
        "PricingQuantity": gpu_hours,
        "PricingUnit": PRICING_UNIT,
        "ProviderName": account.provider_name,
        "PublisherName": account.publisher_name,
        "RegionId": line.site,
        "RegionName": line.site,
        "ResourceId": line.resource_id,
        "ResourceName": line.resource_name,
        "ResourceType": line.resource_type,
        "ServiceCategory": SERVICE_CATEGORY,
        "ServiceName": line.service,
        "ServiceSubcategory": SERVICE_SUBCATEGORY,
        "SubAccountId": line.centre,
        "SubAccountName": settings.centres[line.centre],
        "Tags": json.dumps(tags, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        "x_ChargeKind": line.kind,
        "x_CostCentre": line.centre,
        "x_Node": line.node,
        "x_GpuSku": ",".join(sorted(line.skus)) or None,
        "x_GpuArchitecture": ",".join(sorted(line.architectures)) or None,
        "x_GpuHours": gpu_hours,
        "x_EnergyKWh": _fixed(line.energy_j / J_PER_KWH, "x_EnergyKWh"),
        "x_InputTokens": _fixed(line.input_tokens, "x_InputTokens"),
        "x_OutputTokens": _fixed(line.output_tokens, "x_OutputTokens"),
        "x_SharedIdleCost": _fixed(line.shared_idle_usd, "x_SharedIdleCost"),
        "x_UsdPerMillionTokens": per_mtok,
    }


def _description(line: Line) -> str:
    if line.kind == SERVING:
        text = f"{line.service} served by endpoint {line.endpoint} on node {line.node}"
        return text + (", with a share of idle GPU time" if line.shared_idle_usd > 0 else "")
    assert line.kind == IDLE
    if line.endpoint is not None:
        return f"Idle GPU time of endpoint {line.endpoint} ({line.service}) on node {line.node}"
    return f"Idle time of GPU {line.gpu} on node {line.node}, used by no endpoint"


def _fixed(value: float, column: str) -> Decimal:
    return _quantize(Decimal(value), column)


def _quantize(value: Decimal, column: str) -> Decimal:
    exponent = Decimal(1).scaleb(-_PLACES[column])
    rounded = value.quantize(exponent, context=ARITHMETIC)
    return rounded if rounded else abs(rounded)  # never write -0


def _time(t: int) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)
