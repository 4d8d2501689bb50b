"""Prometheus text metrics without a client library: counters and one latency histogram."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

from aiohttp import web

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    escaped = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                       for k, v in pairs)
    return "{" + escaped + "}"


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self.help: dict[str, str] = {}
        self.histogram_counts: dict[tuple, list[int]] = {}
        self.histogram_sums: dict[tuple, float] = defaultdict(float)

    def inc(self, name: str, amount: float = 1, help: str = "", **labels: str) -> None:
        if help:
            self.help.setdefault(name, help)
        self.counters[name][tuple(sorted(labels.items()))] += amount

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        # Runs on every request: the label tuples are built directly (already in sorted label order, as
        # inc() would sort them) and the bucket found by bisection.
        requests = self.counters["mcpstore_http_requests_total"]
        requests[(("method", method), ("route", route), ("status", str(status)))] += 1
        key = (("method", method), ("route", route))
        counts = self.histogram_counts.get(key)
        if counts is None:
            counts = self.histogram_counts[key] = [0] * (len(BUCKETS) + 1)
        counts[bisect_left(BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds, else +Inf
        self.histogram_sums[key] += seconds

    def render(self) -> str:
        lines = []
        for name, series in sorted(self.counters.items()):
            lines.append(f"# HELP {name} {self.help.get(name, name)}")
            lines.append(f"# TYPE {name} counter")
            lines += [f"{name}{_labels(labels)} {value:g}" for labels, value in sorted(series.items())]
        name = "mcpstore_http_request_duration_seconds"
        lines.append(f"# HELP {name} Time to answer a request, by route")
        lines.append(f"# TYPE {name} histogram")
        for key, counts in sorted(self.histogram_counts.items()):
            cumulative = 0
            for bound, count in zip((*BUCKETS, "+Inf"), counts):
                cumulative += count
                lines.append(f"{name}_bucket{_labels((*key, ('le', str(bound))))} {cumulative}")
            lines.append(f"{name}_sum{_labels(key)} {self.histogram_sums[key]:.6f}")
            lines.append(f"{name}_count{_labels(key)} {cumulative}")
        return "\n".join(lines) + "\n"


def route_label(request: web.Request) -> str:
    """The route template, not the raw path, so label cardinality stays bounded."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical
