"""Counter names shared by the processes that write them and /push/metrics that reads them.

A counter is stored as `name|label=value|label=value` in one Redis hash, so every
process (web, workers) adds to the same numbers.
"""
from __future__ import annotations

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def counter(name: str, **labels: str) -> str:
    return "|".join([name] + [f"{k}={v}" for k, v in sorted(labels.items())])


def parse(key: str) -> tuple[str, dict[str, str]]:
    name, *pairs = key.split("|")
    return name, dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def latency_bucket(seconds: float) -> str:
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            return str(bound)
    return "+Inf"
