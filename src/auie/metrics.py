"""Prometheus metrics, exposed at ``GET /metrics``."""

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "auie_http_requests", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "auie_http_request_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
EVENTS_ACCEPTED = Counter("auie_events_accepted", "Events acknowledged by the collector", ["type"])
EVENTS_DUPLICATE = Counter(
    "auie_events_duplicate", "Acknowledged events not stored again (messageId seen)"
)
EVENTS_REJECTED = Counter(
    "auie_events_rejected", "Events rejected by the collector (dead-lettered)", ["code"]
)
REQUESTS_REJECTED = Counter(
    "auie_collect_requests_rejected", "Collector requests refused as a whole", ["code"]
)
LOG_APPEND_SECONDS = Histogram(
    "auie_log_append_seconds",
    "Time of one durable event log commit (group commit)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
LOG_WRITER_CPU = Gauge(
    "auie_log_writer_cpu_seconds",
    "CPU seconds used so far by the event log writer process (eventlog.writer = process)",
)
LOG_COMMIT_RECORDS = Histogram(
    "auie_log_commit_records",
    "Records per durable event log commit",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000),
)
DECIDE_FAST_PATH = Counter(
    "auie_decide_fast_path",
    "POST /v1/decide requests answered by the fast path, or handed to the full route",
    ["outcome"],
)
PROCESSOR_RESTARTS = Counter(
    "auie_processor_restarts",
    "Processor processes of auie serve restarted after they died (a crash loop counts up)",
)
PROCESSOR_RUNNING = Gauge(
    "auie_processor_running",
    "Members of auie serve's processor group that are running (read at each scrape)",
)
PROCESSOR_LAG = Gauge(
    "auie_processor_lag_events",
    "Events in the event log the processor group has not processed into the lake yet "
    "(read at each scrape)",
)
