"""The Grafana dashboard, the Prometheus alert rules and the metrics reference name only what
atpd serves: a renamed metric fails here, not on an operator's screen at 3 a.m."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.metric_names import (
    Catalogue,
    check_balanced,
    metrics_named,
    served_catalogue,
    unknown_names,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana" / "atp-engine.json"
RULES = ROOT / "ops" / "prometheus" / "atp-alerts.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
ALERTING_DOC = ROOT / "docs" / "alerting.md"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory, gateways: int) -> Catalogue:
    return served_catalogue(tmp_path_factory.mktemp("catalogue"), gateways)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_the_dashboard_is_a_grafana_10_dashboard_with_its_variables() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 38
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"
    ids = [panel["id"] for panel in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])


def test_every_dashboard_expression_names_metrics_and_labels_atpd_serves(
    catalogue: Catalogue,
) -> None:
    problems = []
    named: set[str] = set()
    for panel in _panels(_dashboard()["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"]
            check_balanced(expr)
            assert metrics_named(expr), (panel["title"], expr)
            named |= metrics_named(expr)
            problems += [f"{panel['title']}: {problem}"
                         for problem in unknown_names(expr, catalogue)]
    assert not problems, "\n".join(problems)
    # The brief's panels are there: each of these is read by some panel.
    for wanted in ("atp_rpc_total", "atp_rpc_latency_seconds_bucket", "atp_rpc_in_flight_calls",
                   "atp_rpc_overload_refusals_total", "atp_writer_waiting_commands",
                   "atp_commit_batch_records_bucket", "atp_commit_latency_seconds_bucket",
                   "atp_reservations", "atp_at_risk_lines", "atp_reservations_expired_total",
                   "atp_map_used_bytes", "atp_map_size_bytes", "atp_data_file_bytes",
                   "atp_storage_full", "atp_retention_purged_records_total",
                   "atp_housekeeping_failures_total", "atp_replication_role",
                   "atp_replication_lag_commits", "atp_replication_lag_seconds",
                   "atp_replication_connected", "atp_replication_snapshots_total",
                   "atp_cluster_fenced", "atp_cluster_lease_renewal_age_seconds",
                   "atp_cluster_members", "process_cpu_seconds_total",
                   "process_resident_memory_bytes", "process_open_fds",
                   "atp_health_checks_total"):
        assert wanted in named, wanted


def test_the_checker_catches_a_renamed_metric_and_a_wrong_label(catalogue: Catalogue) -> None:
    assert unknown_names('rate(atp_rpc{instance=~"$instance"}[5m])', catalogue) == [
        "no metric atp_rpc"]
    assert unknown_names("atp_writer_waiting", catalogue) == ["no metric atp_writer_waiting"]
    assert unknown_names('sum by (kind) (atp_reservations{state="HELD"})', catalogue) == [
        "no label kind on ['atp_reservations']"]
    assert unknown_names('atp_reservations{kind="HELD"}', catalogue) == [
        "no label kind on atp_reservations"]
    assert unknown_names(
        'histogram_quantile(0.99, sum by (le, method) '
        '(rate(atp_rpc_latency_seconds_bucket[$__rate_interval])))', catalogue) == []


def _documented_names() -> set[str]:
    return set(re.findall(r"`((?:atp|process)_[a-z0-9_]+)", METRICS_DOC.read_text()))


def test_the_metrics_reference_lists_every_metric_served_and_names_no_other(
    catalogue: Catalogue,
) -> None:
    text = METRICS_DOC.read_text()
    reference = text.split("## Renamed in this release")[0]
    rows = set(re.findall(r"^\| `([a-z_]+)", reference, flags=re.MULTILINE))
    served = {name for family in catalogue.families.values() for name in family.series()
              if not name.endswith(("_bucket", "_sum", "_count"))}
    served |= {family.name for family in catalogue.families.values()
               if family.type == "histogram"}
    assert served - rows == set(), "served but not in docs/metrics.md"
    assert rows - served == set(), "in docs/metrics.md but not served"


def test_the_renamed_table_maps_old_names_to_served_ones(catalogue: Catalogue) -> None:
    renamed = METRICS_DOC.read_text().split("## Renamed in this release")[1]
    pairs = re.findall(r"^\| `([a-z_]+)` \| `([a-z_]+)` \|", renamed, flags=re.MULTILINE)
    assert len(pairs) >= 8
    series = catalogue.by_series()
    for old, new in pairs:
        assert new in series, new
        assert old not in series, f"{old} is still served beside {new}"


def test_the_docs_name_only_served_metrics(catalogue: Catalogue) -> None:
    """The operator's docs name only served metrics; the READMEs (whose `atp_...` words are
    also fields and functions) name no old one."""
    known = set(catalogue.by_series()) | set(catalogue.families)
    old = {old for old, _ in re.findall(
        r"^\| `([a-z_]+)` \| `([a-z_]+)` \|",
        METRICS_DOC.read_text().split("## Renamed in this release")[1], flags=re.MULTILINE)}
    for doc in (ROOT / "README.md", ROOT / "bench" / "README.md", ALERTING_DOC, OPERATIONS_DOC,
                METRICS_DOC):
        text = doc.read_text()
        if doc == METRICS_DOC:
            text = text.split("## Renamed in this release")[0]
        for name in sorted(set(re.findall(r"\b((?:atp|process)_[a-z0-9_]+)", text))):
            assert name not in old, f"{doc.name} names the old metric {name}"
            if doc.parent.name == "docs":
                assert name in known, f"{doc.name} names {name}, which atpd does not serve"


# ----- the Prometheus rules -------------------------------------------------------------------


def _rules() -> list[dict[str, str]]:
    """The rules of ops/prometheus/atp-alerts.yml, read line by line (the file keeps to a plain
    layout: one `- alert:` per rule, `expr:` inline or as a `|` block)."""
    rules: list[dict[str, str]] = []
    lines = RULES.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        key, _, value = line.strip().removeprefix("- ").partition(":")
        value = value.strip()
        if key == "alert":
            rules.append({"alert": value})
        elif rules and key in ("expr", "for", "severity", "summary", "runbook"):
            if value == "|":
                indent = len(line) - len(line.lstrip())
                block = []
                while index + 1 < len(lines) and (
                        not lines[index + 1].strip()
                        or len(lines[index + 1]) - len(lines[index + 1].lstrip()) > indent):
                    index += 1
                    block.append(lines[index].strip())
                value = " ".join(block)
            rules[-1][key] = value.strip('"')
        index += 1
    return rules


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)}


def test_every_alert_names_served_metrics_and_has_a_severity_and_a_runbook(
    catalogue: Catalogue,
) -> None:
    rules = _rules()
    assert len(rules) >= 15
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    anchors = _anchors(OPERATIONS_DOC.read_text())
    alerting = ALERTING_DOC.read_text()
    problems = []
    for rule in rules:
        expr = rule["expr"]
        check_balanced(expr)
        problems += [f"{rule['alert']}: {problem}" for problem in unknown_names(expr, catalogue)]
        assert rule["severity"] in ("page", "ticket"), rule
        assert rule["summary"], rule
        doc, _, anchor = rule["runbook"].partition("#")
        assert doc == "docs/operations.md" and anchor in anchors, rule
        assert rule["alert"] in alerting, f"docs/alerting.md does not explain {rule['alert']}"
    assert not problems, "\n".join(problems)
    assert {"AtpdStorageFull", "AtpdNoLeader", "AtpdFenced", "AtpdServerErrors",
            "AtpdOverloaded", "AtpdHousekeepingFailing", "AtpdClockSteppedForward",
            "AtpdReplicationLagAboveFailoverBound", "AtpdRestarted"} <= set(names)


def test_the_rules_reader_reads_block_expressions() -> None:
    by_name = {rule["alert"]: rule for rule in _rules()}
    assert by_name["AtpdServerErrors"]["expr"].startswith("sum by (instance) (rate(atp_rpc_total")
    assert "and sum by (instance)" in by_name["AtpdServerErrors"]["expr"]
    assert by_name["AtpdStorageFull"]["for"] == "1m"


def test_the_docs_link_to_headings_that_exist() -> None:
    docs = {path.name: path.read_text() for path in (ALERTING_DOC, OPERATIONS_DOC, METRICS_DOC)}
    for name, text in docs.items():
        for target, anchor in re.findall(r"\]\(([\w./-]*?)#([\w-]+)\)", text):
            linked = docs[Path(target).name] if target else text
            assert anchor in _anchors(linked), f"{name} links to {target}#{anchor}"
