"""The series index finds exactly the rules that a scan of every rule finds, in rule order."""

from __future__ import annotations

import numpy as np

from stream_rca.ingest.mapping import Match, Matcher, SeriesIndex, SeriesRule

METRICS = ["lat", "req", "dur"]
LABELS = ["graph", "node", "job", "zone"]
VALUES = ["", "a", "b", "c", "x1", "x2"]
OPS = ["=", "=", "=", "!=", "=~", "!~"]


def _rule(rng: np.random.Generator, i: int) -> SeriesRule:
    matchers = []
    for name in rng.permutation(LABELS)[: int(rng.integers(0, 4))].tolist():
        op = str(rng.choice(OPS))
        value = str(rng.choice(VALUES))
        if op in ("=~", "!~"):
            value = str(rng.choice(["x.", "a|b", ".*", ""]))
        matchers.append(Matcher(name, op, value))
    kind = str(rng.choice(["gauge", "gauge", "counter", "histogram"]))
    return SeriesRule(f"g{i % 3}", f"n{i}", str(rng.choice(METRICS)), tuple(matchers), kind)


def _scan(rules: list[SeriesRule], labels: tuple[tuple[str, str], ...]) -> tuple[Match, ...]:
    as_dict = dict(labels)
    name = as_dict.pop("__name__", "")
    found: list[Match] = []
    for rule in rules:
        if rule.kind == "histogram":
            parts = {rule.metric + s: s[1:] for s in ("_bucket", "_sum", "_count")}
            parts[rule.metric] = "whole"
            if name in parts and rule.matches(as_dict):
                found.append(Match(rule, parts[name]))
        elif name == rule.metric and rule.matches(as_dict):
            found.append(Match(rule))
    return tuple(found)


def test_index_equals_a_scan_of_every_rule() -> None:
    rng = np.random.default_rng(7)
    for trial in range(40):
        rules = [_rule(rng, i) for i in range(int(rng.integers(1, 30)))]
        index = SeriesIndex(rules)
        names = [*METRICS, "lat_sum", "dur_bucket", "dur_count", "dur", "other"]
        for _ in range(60):
            labels = {"__name__": str(rng.choice(names))}
            for label in LABELS:
                if rng.random() < 0.7:
                    labels[label] = str(rng.choice(VALUES[1:]))
            key = tuple(sorted(labels.items()))
            assert index.lookup(key) == _scan(rules, key), (trial, key)
