"""Which series the worker exports, and which series and labels a PromQL expression reads.

Shared by the dashboard and alert-rule tests: a query on a misspelled metric or label does not fail
in Prometheus or Grafana, it just draws an empty panel or never fires, so the tests compare names.
The parser is deliberately small: it understands the PromQL the deploy/ files use (selectors,
matchers, range vectors, functions, aggregations with by/without), not the whole language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from stream_tagger.metrics import Metrics

#: Labels Prometheus itself attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
#: Series Prometheus makes for each target; not the worker's.
PROMETHEUS_SERIES = {"up": frozenset()}

_SUFFIXES = {
    "counter": (("_total", False),),
    "gauge": (("", False),),
    "histogram": (("_bucket", True), ("_sum", False), ("_count", False)),
    "summary": (("_sum", False), ("_count", False)),
    "info": (("_info", False),),
}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_IDENTIFIER = re.compile(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"})


def exported_series() -> dict[str, frozenset[str]]:
    """Exposed series name -> its label names, read from a fresh ``Metrics`` instance.

    Collectors only expose samples for label sets already used, so the label names come from the
    collector objects (``_labelnames``/``_type`` of the pinned prometheus-client). Collectors of several
    families (the process and platform collectors) declare nothing: their families are read from a
    collection, which always has samples.
    """
    registry = CollectorRegistry()
    Metrics(registry)
    series: dict[str, frozenset[str]] = {}
    for collector in registry._collector_to_names:
        if not hasattr(collector, "_type"):
            for family in collector.collect():
                for sample in family.samples:
                    series[sample.name] = frozenset(sample.labels)
            continue
        assert collector._type in _SUFFIXES, f"{collector._name}: teach promql_names about {collector._type}"
        labels = frozenset(collector._labelnames)
        for suffix, has_le in _SUFFIXES[collector._type]:
            series[collector._name + suffix] = labels | {"le"} if has_le else labels
    return series


@dataclass
class Reads:
    """What one expression reads: series names, label names in matchers per series, grouping labels."""

    series: set[str] = field(default_factory=set)
    matcher_labels: dict[str, set[str]] = field(default_factory=dict)
    grouping_labels: set[str] = field(default_factory=set)


def reads(expr: str) -> Reads:
    found = Reads()
    text = re.sub(r"\[[^\]]*\]", " ", expr)  # range vectors and subqueries: [5m], [$__rate_interval]
    for match in _GROUPING.finditer(text):
        found.grouping_labels |= {name.strip() for name in match.group(1).split(",") if name.strip()}
    text = _GROUPING.sub(" ", text)
    for name, body in _MATCHERS.findall(text):
        labels = {m.group(1) for m in re.finditer(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", body)}
        found.matcher_labels.setdefault(name, set()).update(labels)
    text = _MATCHERS.sub(lambda m: f" {m.group(1)} ", text)
    text = re.sub(r'"[^"]*"', " ", text)  # remaining strings, e.g. label_replace arguments
    found.series = {name for name in _IDENTIFIER.findall(text) if name not in _KEYWORDS}
    return found


def problems(expr: str, known: dict[str, frozenset[str]]) -> list[str]:
    """Everything in ``expr`` that does not exist among ``known`` series and labels; empty when fine."""
    found = reads(expr)
    errors = [f"unknown series {name!r}" for name in sorted(found.series - set(known))]
    if not found.series:
        errors.append("reads no series")
    for name, labels in found.matcher_labels.items():
        allowed = known.get(name, frozenset()) | TARGET_LABELS
        errors += [f"{name} has no label {label!r}" for label in sorted(labels - allowed)]
    available = TARGET_LABELS.union(*(known.get(name, frozenset()) for name in found.series))
    errors += [f"grouping by unknown label {label!r}" for label in sorted(found.grouping_labels - available)]
    return errors
