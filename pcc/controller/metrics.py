"""What `/metrics` exports (prometheus-client), following Prometheus naming: base units,
``_total`` counters, bounded labels (site names and states; never reservation ids or
user names)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

SITE_UP = Gauge(
    "pcc_site_up",
    "1 when the site's last probe answered (up or degraded), else 0",
    ["site"],
    registry=REGISTRY,
)
SITE_HEALTHY = Gauge(
    "pcc_site_healthy", "1 when the site's last probe found no problem", ["site"], registry=REGISTRY
)
SITE_PROBE_SECONDS = Gauge(
    "pcc_site_probe_duration_seconds", "Duration of the site's last probe", ["site"], registry=REGISTRY
)
SITE_LAST_SUCCESS = Gauge(
    "pcc_site_last_successful_probe_timestamp_seconds",
    "Unix time of the site's last answered probe",
    ["site"],
    registry=REGISTRY,
)
SITE_CPUS = Gauge(
    "pcc_site_cpus",
    "CPUs at the site now, by kind (total, free, reserved)",
    ["site", "kind"],
    registry=REGISTRY,
)
SITE_MEMORY = Gauge(
    "pcc_site_memory_bytes",
    "Memory at the site now, by kind (total, free, reserved)",
    ["site", "kind"],
    registry=REGISTRY,
)
SITE_CPUS_NEXT_DAY = Gauge(
    "pcc_site_reserved_cpus_next_24h",
    "Peak CPUs reserved at the site in the next 24 h",
    ["site"],
    registry=REGISTRY,
)
ALLOCATIONS = Gauge("pcc_allocations", "Allocations by state", ["state"], registry=REGISTRY)
RESERVATIONS = Gauge("pcc_reservations", "Reservations by overall state", ["state"], registry=REGISTRY)
TRANSITIONS = Counter(
    "pcc_state_transitions_total",
    "Allocation state transitions",
    ["from_state", "to_state"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "pcc_reconcile_duration_seconds",
    "Duration of a reconcile pass",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter("pcc_reconcile_errors_total", "Reconcile passes that failed", registry=REGISTRY)
BOOT_SECONDS = Histogram(
    "pcc_boot_duration_seconds",
    "From an allocation's boot start to its cluster running",
    ["site"],
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
TEARDOWN_DELAY = Histogram(
    "pcc_teardown_delay_seconds",
    "From a reservation's end to its cluster torn down",
    ["site"],
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
BOOT_FAILURES = Counter(
    "pcc_boot_failures_total",
    "Allocations that failed to boot, by site and kind of reason",
    ["site", "reason"],
    registry=REGISTRY,
)
SCHEDD_QUERY_SECONDS = Histogram(
    "pcc_schedd_query_duration_seconds",
    "Duration of the loop's schedd query",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
    registry=REGISTRY,
)
QUEUE_JOBS = Gauge("pcc_condor_queue_jobs", "PCC's jobs in the HTCondor queue", registry=REGISTRY)


def failure_kind(reason: str) -> str:
    """A bounded label for a failure's reason text."""
    text = reason.lower()
    for kind, words in (
        ("unreachable", ("cannot reach", "ssh to", "did not finish", "unreachable")),
        ("capacity", ("not enough", "short of", "no free")),
        ("held", ("held",)),
        ("site_tool", ("site ",)),
    ):
        if any(w in text for w in words):
            return kind
    return "other"


def serve_metrics(port: int, address: str = "127.0.0.1") -> None:
    """Serve /metrics on a loopback port (a background thread)."""
    start_http_server(port, addr=address, registry=REGISTRY)
