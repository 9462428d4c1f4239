"""Every metric atpd can serve, with its labels: what the dashboard, the alert rules and the
metrics reference are checked against, so none of them can name a metric that is not there.

Three sources, joined: a live atpd's /metrics (the real process: storage, process_*, build
info), an in-process `Metrics` given a follower-in-a-cluster replication status (the
families a standalone server does not serve: atp_replication_connected, atp_cluster_*), and
what the supervisor of `atpd --gateways N` adds to its processes' totals.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from atp.engine.clock import SteadyClock
from atp.engine.writer import Writer
from atp.ledger import Ledger
from atp.ledger.delivery_measures import measures_met
from atp.server.admission import AdmissionGate
from atp.server.health import CountedHealthServicer
from atp.server.metrics import Metrics
from atp.server.summed_metrics import SummedCollector
from atp.store import MemoryStore
from atp.v1 import replication_pb2
from tests.support.atpd import AtpdProcess, free_port

# Labels Prometheus adds to every series it scrapes, and the histogram bucket label.
TARGET_LABELS = frozenset({"instance", "job"})


@dataclass
class Family:
    name: str  # as in `# TYPE`: without a counter's _total
    type: str
    help: str
    labels: set[str] = field(default_factory=set)

    def series(self) -> set[str]:
        """The names of the series this family serves."""
        if self.type == "counter":
            return {f"{self.name}_total"}
        if self.type == "histogram":
            return {f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count"}
        if self.type == "info":
            return {f"{self.name}_info"}
        return {self.name}

    def labels_of(self, series: str) -> set[str]:
        return self.labels | TARGET_LABELS | ({"le"} if series.endswith("_bucket") else set())


@dataclass
class Catalogue:
    families: dict[str, Family]

    def by_series(self) -> dict[str, Family]:
        return {series: family for family in self.families.values()
                for series in family.series()}


def _add(families: dict[str, Family], metrics: Iterable[Metric]) -> None:
    for metric in metrics:
        family = families.setdefault(
            metric.name, Family(metric.name, metric.type, metric.documentation))
        for sample in metric.samples:
            family.labels.update(name for name in sample.labels if name != "le")


def served_catalogue(tmp_path: Path, gateways: int = 0) -> Catalogue:
    """Every family atpd serves on --metrics-port (with `gateways`, the supervisor's sum of
    its processes' pages), and those only a cluster follower or a supervisor adds."""
    families: dict[str, Family] = {}
    port = free_port()
    with (AtpdProcess(tmp_path / "catalogue-data", "--metrics-port", str(port),
                      gateways=gateways),
          urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply):
        text = reply.read().decode()
    _add(families, text_string_to_metric_families(text))
    _add(families, _cluster_follower_metrics().registry.collect())
    # What only the supervisor of `atpd --gateways N` adds to its children's totals.
    _add(families, SummedCollector(list).collect())
    # In-process, the Info family atp_build; served, the gauge atp_build_info: one series.
    families.pop("atp_build", None)
    return Catalogue(families)


def _cluster_follower_metrics() -> Metrics:
    admission = AdmissionGate(1, ())
    ledger = Ledger()
    metrics = Metrics(Writer(ledger, MemoryStore(), clock=SteadyClock()), admission)
    # A delivery counted, so that the delivery families' labels are seen.
    ledger.delivery_tally.count("web", measures_met(1, 1, 1, 1, 0, True))
    admission.on_refused("Reserve")  # a child, so its labels are seen
    status = replication_pb2.ReplicationStatus(
        role="follower", commit=1, term=1, connected=True, cluster="c",
        lease_renewed_seconds_ago=0.5, fenced=False,
        members=[replication_pb2.MemberStatus(address="a:1", role="leader")],
        followers=[replication_pb2.FollowerStatus(follower_id="b:2", lag_commits=1,
                                                  lag_seconds=0.1)])
    metrics.watch_replication(lambda: status)
    metrics.watch_snapshots(lambda: 0, lambda: 0)
    health = CountedHealthServicer({""})
    metrics.watch_health(health)
    health.answered("Check", "", "SERVING")  # a child, so its labels are seen
    return metrics


# ----- PromQL, just enough to find the metrics and labels an expression names --------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_IDENTIFIER = re.compile(r"(?<![\w$:.])([a-zA-Z_:][\w:]*)")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
PROMQL_WORDS = frozenset({
    # aggregations and their modifiers
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "and", "or", "unless", "offset",
    # functions
    "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets", "abs",
    "clamp_min", "clamp_max", "histogram_quantile", "label_replace", "time", "timestamp",
    "vector", "scalar", "absent", "absent_over_time", "max_over_time", "min_over_time",
    "avg_over_time", "sum_over_time", "count_over_time", "last_over_time",
    "predict_linear", "round", "ceil", "floor", "sort", "sort_desc",
    # Prometheus's own series
    "up",
})


def metrics_named(expr: str) -> set[str]:
    """The metric names an expression reads (its strings, durations, words and Grafana
    variables left out)."""
    bare = _STRING.sub('""', expr)
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # range durations: [5m], [$__rate_interval]
    bare = _GROUPING.sub("", bare)  # label names in by (...), on (...)
    bare = re.sub(r"\{[^}]*\}", "", bare)  # matchers
    return {word for word in _IDENTIFIER.findall(bare)
            if word not in PROMQL_WORDS and not re.fullmatch(r"\d\w*", word)}


def labels_named(expr: str) -> dict[str, set[str]]:
    """For each selector `name{...}`, the label names its matchers use; grouping labels
    (by, on, ...) under the key ""."""
    bare = _STRING.sub('""', expr)
    found: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(bare):
        found.setdefault(name, set()).update(_MATCHER_LABEL.findall(matchers))
    for grouping in _GROUPING.findall(bare):
        found.setdefault("", set()).update(
            label.strip() for label in grouping.split(",") if label.strip())
    return found


def unknown_names(expr: str, catalogue: Catalogue) -> list[str]:
    """What `expr` names that atpd does not serve: metrics, and labels of its metrics."""
    series = catalogue.by_series()
    problems = [f"no metric {name}" for name in sorted(metrics_named(expr))
                if name not in series and name != "up"]
    named = metrics_named(expr)
    allowed_grouping = set(TARGET_LABELS) | {"le"}
    for name in named:
        if name in series:
            allowed_grouping |= series[name].labels_of(name)
    for name, labels in labels_named(expr).items():
        if name == "":
            problems += [f"no label {label} on {sorted(named)}"
                         for label in sorted(labels - allowed_grouping)]
        elif name in series:
            problems += [f"no label {label} on {name}"
                         for label in sorted(labels - series[name].labels_of(name))]
    return problems


def check_balanced(expr: str) -> None:
    """Brackets pair up (a typo'd expression fails here rather than in Grafana)."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in _STRING.sub('""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            assert stack and stack.pop() == pairs[char], f"unbalanced {char!r} in {expr!r}"
    assert not stack, f"unclosed {stack} in {expr!r}"
