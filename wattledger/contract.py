"""The wire contract between agent and collector (DESIGN.md section 3).

Metric and attribute names live here once, so the agent that writes them and the collector that
reads them cannot drift apart. Names follow the OpenTelemetry semantic conventions (``hw.*``,
``gen_ai.*``) where they exist and the ``wattledger.`` namespace where none does.
"""

SERVICE_NAME = "wattledger-agent"
SCOPE_NAME = "wattledger.agent"

# Resource attributes.
RES_SERVICE_NAME = "service.name"
RES_HOST_NAME = "host.name"
RES_NODE = "wattledger.node"
RES_CLUSTER = "wattledger.cluster"
RES_SITE = "wattledger.site"
RES_TAG_PREFIX = "wattledger.tag."

# GPU metrics: one series per physical GPU.
METRIC_ENERGY = "hw.energy"  # Counter, J
METRIC_POWER = "hw.power"  # Gauge, W
METRIC_UTILIZATION = "hw.gpu.utilization"  # Gauge, 1 (0..1), absent under MIG
METRIC_MEMORY_USAGE = "hw.gpu.memory.usage"  # UpDownCounter, By
METRIC_MEMORY_LIMIT = "hw.gpu.memory.limit"  # UpDownCounter, By
# Grace-Blackwell / Grace-Hopper module energy (GPU + Grace CPU), reported apart, never added.
METRIC_MODULE_ENERGY = "wattledger.gpu.module.energy"  # Counter, J
# Share of a parent GPU given to one MIG instance (0..1).
METRIC_MIG_SHARE = "wattledger.gpu.mig.share"  # Gauge, 1

ATTR_HW_TYPE = "hw.type"
ATTR_HW_ID = "hw.id"
ATTR_HW_NAME = "hw.name"
ATTR_HW_VENDOR = "hw.vendor"
ATTR_HW_PARENT = "hw.parent"
ATTR_ARCHITECTURE = "wattledger.gpu.architecture"
ATTR_SKU = "wattledger.gpu.sku"
ATTR_ENERGY_SOURCE = "wattledger.energy.source"  # counter | power_integral
ATTR_POWER_SCOPE = "wattledger.power.scope"  # gpu | module | memory
ATTR_MIG_PROFILE = "wattledger.mig.profile"
ATTR_SHARE_METHOD = "wattledger.share.method"  # activity | slices

HW_TYPE_GPU = "gpu"
HW_VENDOR_NVIDIA = "nvidia"
ENERGY_SOURCE_COUNTER = "counter"
ENERGY_SOURCE_POWER_INTEGRAL = "power_integral"

# Engine metrics: one series set per scraped endpoint.
METRIC_TOKENS = "wattledger.engine.tokens"  # Counter, {token}
METRIC_REQUESTS = "wattledger.engine.requests"  # Counter, {request}
METRIC_PHASE_TIME = "wattledger.engine.phase.time"  # Counter, s

ATTR_ENGINE = "wattledger.engine"
ATTR_ENGINE_VERSION = "wattledger.engine.version"
ATTR_ENDPOINT = "wattledger.endpoint"
ATTR_MODEL = "gen_ai.request.model"
ATTR_ROLE = "wattledger.role"
ATTR_GPU_IDS = "wattledger.gpu.ids"
ATTR_TOKEN_TYPE = "gen_ai.token.type"
ATTR_PHASE = "wattledger.phase"

TOKEN_INPUT = "input"
TOKEN_OUTPUT = "output"
TOKEN_INPUT_CACHED = "input_cached"  # a subset of input, never added to it
TOKEN_TYPES = (TOKEN_INPUT, TOKEN_OUTPUT, TOKEN_INPUT_CACHED)

PHASE_PREFILL = "prefill"
PHASE_DECODE = "decode"
PHASES = (PHASE_PREFILL, PHASE_DECODE)

ROLE_AGGREGATED = "aggregated"
ROLE_PREFILL = "prefill"
ROLE_DECODE = "decode"
ROLES = (ROLE_AGGREGATED, ROLE_PREFILL, ROLE_DECODE)

ENGINES = ("vllm", "sglang", "trtllm", "triton", "dynamo", "tgi", "llamacpp")

UNITS = {
    METRIC_ENERGY: "J",
    METRIC_MODULE_ENERGY: "J",
    METRIC_POWER: "W",
    METRIC_UTILIZATION: "1",
    METRIC_MEMORY_USAGE: "By",
    METRIC_MEMORY_LIMIT: "By",
    METRIC_MIG_SHARE: "1",
    METRIC_TOKENS: "{token}",
    METRIC_REQUESTS: "{request}",
    METRIC_PHASE_TIME: "s",
}

# Metrics the collector stores as cumulative counters (deltas) and as gauges (samples).
COUNTER_METRICS = frozenset(
    {METRIC_ENERGY, METRIC_MODULE_ENERGY, METRIC_TOKENS, METRIC_REQUESTS, METRIC_PHASE_TIME}
)
GAUGE_METRICS = frozenset(
    {METRIC_POWER, METRIC_UTILIZATION, METRIC_MEMORY_USAGE, METRIC_MEMORY_LIMIT, METRIC_MIG_SHARE}
)
