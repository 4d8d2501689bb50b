"""Prometheus text metrics without a client library: counters, gauges read when rendered, one latency histogram."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable

from aiohttp import web

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    escaped = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                       for k, v in pairs)
    return "{" + escaped + "}"


class _RequestSeries:
    __slots__ = ("statuses", "buckets", "seconds")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.seconds = 0.0


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self.help: dict[str, str] = {}
        self.histogram_counts: dict[tuple, list[int]] = {}
        self.histogram_sums: dict[tuple, float] = defaultdict(float)
        self._requests: dict[tuple, _RequestSeries] = {}
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def inc(self, name: str, amount: float = 1, help: str = "", **labels: str) -> None:
        if help:
            self.help.setdefault(name, help)
        self.counters[name][tuple(sorted(labels.items()))] += amount

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        """A value read when /metrics is rendered (e.g. connections open)."""
        self.gauges[name] = (help, read)

    def observe_request(self, resource: web.AbstractResource | None, method: str, status: int,
                        seconds: float) -> None:
        """Runs on every request, so it only counts: per (route's resource, method), responses per status and the
        latency histogram. Label strings are made when /metrics is read (route_label, render). Unrouted requests
        (404, 405) have no resource and share one series: their routes are new objects each time."""
        key = (resource, method)
        series = self._requests.get(key)
        if series is None:
            series = self._requests[key] = _RequestSeries()
        statuses = series.statuses
        statuses[status] = statuses.get(status, 0) + 1
        series.buckets[bisect_left(BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds, else +Inf
        series.seconds += seconds

    def _fold_requests(self) -> None:
        """Request series into the labelled counters and histograms that render() prints (two routes can share
        a label: every unrouted request is "unmatched")."""
        requests = self.counters["mcpstore_http_requests_total"]
        requests.clear()
        self.histogram_counts.clear()
        self.histogram_sums.clear()
        for (resource, method), series in list(self._requests.items()):
            key = (("method", method), ("route", route_label(resource)))
            for status, count in series.statuses.items():
                requests[(*key, ("status", str(status)))] += count
            counts = self.histogram_counts.setdefault(key, [0] * (len(BUCKETS) + 1))
            for i, count in enumerate(series.buckets):
                counts[i] += count
            self.histogram_sums[key] += series.seconds

    def render(self) -> str:
        self._fold_requests()
        lines = []
        for name, series in sorted(self.counters.items()):
            lines.append(f"# HELP {name} {self.help.get(name, name)}")
            lines.append(f"# TYPE {name} counter")
            lines += [f"{name}{_labels(labels)} {value:g}" for labels, value in sorted(series.items())]
        for name, (help, read) in sorted(self.gauges.items()):
            lines += [f"# HELP {name} {help}", f"# TYPE {name} gauge", f"{name} {read():g}"]
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


def route_label(resource: web.AbstractResource | None) -> str:
    """The route template, not the raw path, so label cardinality stays bounded."""
    return "unmatched" if resource is None else resource.canonical
