"""Attribution time per anomaly, stream-rca against DoWhy-GCM, and exact against sampled Shapley.

Both tools learn from the same training rows of the same graph and attribute the same anomalous
rows. stream-rca: only :meth:`Engine.explain` is timed (median of ``repeat`` calls per anomaly,
half before and half after DoWhy-GCM's run, so that a change of the shared machine's load hits
both tools). DoWhy-GCM: only ``gcm.attribute_anomalies`` (see :mod:`benchmarks.dowhy_gcm`).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt

from benchmarks.cases import AttributionCase, dowhy_example, simulated
from benchmarks.common import (
    Check,
    Report,
    Table,
    Timing,
    ms,
    say,
    snapshot,
    time_calls,
    train_engine,
)
from benchmarks.dowhy_gcm import DowhyOutcome, run_dowhy
from benchmarks.profiling import profile_text
from stream_rca.core.engine import Engine, EngineConfig
from stream_rca.core.types import Attribution
from stream_rca.parallel import attribution_pool

__all__ = ["SpeedSettings", "attribution_speed", "rank_correlation"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SpeedSettings:
    include_example: bool = True
    """Include the DoWhy microservice example (needs the reference data)."""
    sim_sizes: tuple[int, ...] = (10, 20, 50, 100)
    n_anomalies: int = 3
    n_train: int = 2000
    """Training rows of the simulated cases."""
    repeat: int = 24
    """``Engine.explain`` calls per anomaly (the median is reported; the machine is shared)."""
    run_dowhy: bool = True
    dowhy_budget: float = 900.0
    """Seconds per case for DoWhy-GCM (fitting and all its anomalies)."""
    exact_limit: int = 16
    """Largest player count for which the exact reference is computed."""
    reference_permutations: int = 1024
    """Permutations of the sampled reference beyond ``exact_limit`` players."""
    seed: int = 0


@dataclass
class _Measured:
    case: AttributionCase
    engine: Engine
    attributions: list[Attribution]
    seconds: list[float]
    """Median explain time per anomaly."""
    cpu_seconds: list[float]
    """Median process CPU time of the same calls (below the wall time where the shared
    machine's other work took the processor away)."""
    dowhy: DowhyOutcome


def rank_correlation(a: FloatArray, b: FloatArray) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    if a.size < 2:
        return math.nan

    def ranks(x: FloatArray) -> FloatArray:
        order = np.argsort(x, kind="stable")
        r = np.empty(x.size)
        r[order] = np.arange(x.size, dtype=np.float64)
        for v in np.unique(x):  # average the ranks of ties
            tie = x == v
            r[tie] = r[tie].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _explain_timing(engine: Engine, case: AttributionCase, repeat: int) -> list[Timing]:
    out = []
    for i, row in enumerate(case.anomalies):
        snap = snapshot(case.graph, row, float(case.train.shape[0] + i))
        timing, _ = time_calls(partial(engine.explain, snap, case.target), repeat)
        out.append(timing)
    return out


def _measure(case: AttributionCase, settings: SpeedSettings) -> _Measured:
    say(f"[speed] {case.name}: training stream-rca on {case.train.shape[0]} rows")
    engine = train_engine(case.graph, case.config, case.train, targets=[case.target])
    engine.pool = attribution_pool()  # as the worker, replay and the demo run it
    half = max(1, settings.repeat // 2)
    before = _explain_timing(engine, case, half)
    if settings.run_dowhy:
        say(f"[speed] {case.name}: DoWhy-GCM (budget {settings.dowhy_budget:.0f} s)")
        dowhy = run_dowhy(
            case.graph.edges,
            case.graph.nodes,
            case.train,
            case.anomalies,
            case.target,
            budget=settings.dowhy_budget,
            seed=settings.seed,
        )
        if dowhy.note:
            say(f"[speed] note: {case.name}: {dowhy.note}")
    else:
        dowhy = DowhyOutcome("skipped", "DoWhy-GCM not run (--no-dowhy)")
    after = _explain_timing(engine, case, settings.repeat - half)
    seconds = [statistics.median(b.wall + a.wall) for b, a in zip(before, after, strict=True)]
    cpu = [statistics.median(b.cpu + a.cpu) for b, a in zip(before, after, strict=True)]
    atts = [
        engine.explain(snapshot(case.graph, row, float(case.train.shape[0] + i)), case.target)
        for i, row in enumerate(case.anomalies)
    ]
    return _Measured(case, engine, atts, seconds, cpu, dowhy)


def _hits(tops: list[str | None], truth: tuple[frozenset[str], ...]) -> str:
    done = [(t, s) for t, s in zip(tops, truth, strict=False) if t is not None]
    if not done:
        return "-"
    return f"{sum(t in s for t, s in done)}/{len(done)}"


def _speed_table(measured: list[_Measured]) -> Table:
    table = Table(
        "Attribution time per anomaly: stream-rca vs DoWhy-GCM (same data, same graph, same run)",
        [
            "case",
            "nodes",
            "players",
            "stream-rca method",
            "stream-rca / anomaly",
            "DoWhy-GCM / anomaly",
            "DoWhy-GCM fit",
            "speed-up",
            "top node stream-rca (hits)",
            "top node DoWhy-GCM (hits)",
            "same top",
        ],
    )
    for m in measured:
        ours = statistics.median(m.seconds)
        theirs = m.dowhy.median
        tops = [a.root_causes[0].node for a in m.attributions]
        dw_tops = [m.dowhy.top(i) for i in range(len(tops))]
        same = [a == b for a, b in zip(tops, dw_tops, strict=True) if b is not None]
        table.add(
            m.case.name,
            len(m.case.graph),
            m.case.players,
            m.attributions[0].method,
            ms(ours),
            ms(theirs) if m.dowhy.seconds else m.dowhy.status,
            ms(m.dowhy.fit_seconds),
            f"{theirs / ours:,.0f}x" if m.dowhy.seconds else "-",
            f"{tops[0]} ({_hits(list(tops), m.case.truth)})",
            f"{dw_tops[0]} ({_hits(dw_tops, m.case.truth)})" if dw_tops[0] else "-",
            f"{sum(same)}/{len(same)}" if same else "-",
        )
        if m.dowhy.note:
            table.notes.append(f"{m.case.name}: {m.dowhy.note}.")
    table.notes.append(
        "Per anomaly: stream-rca the median of repeated `Engine.explain` calls; DoWhy-GCM one "
        "`gcm.attribute_anomalies` call (median over anomalies). Hits: the top node is the "
        "planted root cause. Fit: DoWhy-GCM's `assign_causal_mechanisms` + `fit` (not in the "
        "speed-up); stream-rca learns online, one snapshot at a time."
    )
    return table


def _gap(case: AttributionCase, settings: SpeedSettings) -> list[object]:
    """Compare stream-rca's sampled attribution with an exact (or much larger) reference."""
    d = case.players
    base = case.config
    if d <= settings.exact_limit:
        ref_cfg = dataclasses.replace(base, exact_max_players=d)
        ref_name = "exact"
    else:
        ref_cfg = dataclasses.replace(
            base, exact_max_players=0, n_permutations=settings.reference_permutations
        )
        ref_name = f"{settings.reference_permutations} permutations"
    sampled_cfg = dataclasses.replace(base, exact_max_players=0)
    ref = train_engine(case.graph, ref_cfg, case.train, targets=[case.target])
    sampled = train_engine(case.graph, sampled_cfg, case.train, targets=[case.target])
    worst_abs = worst_rel = worst_err = 0.0
    same_top, rhos, t_ref, t_sam = 0, [], [], []
    for i, row in enumerate(case.anomalies):
        snap = snapshot(case.graph, row, float(case.train.shape[0] + i))
        tr, a = time_calls(partial(ref.explain, snap, case.target), 1)
        ts, b = time_calls(partial(sampled.explain, snap, case.target), 3)
        t_ref.append(tr.median)
        t_sam.append(ts.median)
        phi_a = {rc.node: rc.contribution for rc in a.root_causes}
        phi_b = {rc.node: rc.contribution for rc in b.root_causes}
        names = sorted(phi_a)
        va = np.array([phi_a[n] for n in names])
        vb = np.array([phi_b[n] for n in names])
        diff = float(np.max(np.abs(va - vb)))
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / max(abs(a.target_score), 1e-12))
        worst_err = max(worst_err, max(rc.stderr for rc in b.root_causes))
        same_top += a.root_causes[0].node == b.root_causes[0].node
        rhos.append(rank_correlation(va, vb))
    return [
        case.name,
        d,
        ref_name,
        f"{sampled_cfg.n_permutations} permutations",
        worst_abs,
        f"{100 * worst_rel:.1f} %",
        worst_err,
        f"{same_top}/{case.anomalies.shape[0]}",
        float(np.nanmin(rhos)) if not all(math.isnan(r) for r in rhos) else math.nan,
        ms(statistics.median(t_ref)),
        ms(statistics.median(t_sam)),
    ]


def attribution_speed(settings: SpeedSettings) -> Report:
    """Time both tools per anomaly on every case, and the exact-vs-sampled gap of stream-rca."""
    report = Report()
    cases = [dowhy_example()] if settings.include_example else []
    cases += [
        simulated(n, seed=settings.seed, n_train=settings.n_train, n_anomalies=settings.n_anomalies)
        for n in settings.sim_sizes
    ]
    measured = [_measure(c, settings) for c in cases]
    report.tables.append(_speed_table(measured))

    gap = Table(
        "stream-rca: sampled (permutation) attributions against a reference, same snapshot",
        [
            "case",
            "players",
            "reference",
            "sampled",
            "max abs diff (nats)",
            "max diff / target score",
            "max reported stderr",
            "same top node",
            "min rank corr.",
            "time reference",
            "time sampled",
        ],
    )
    for case in cases:
        say(f"[speed] exact vs sampled: {case.name}")
        gap.add(*_gap(case, settings))
    gap.notes.append(
        "Sampled: `exact_max_players=0` forces antithetic permutation sampling with the default "
        f"{EngineConfig().n_permutations} orders; reference: all coalitions (exact) where that "
        f"fits in memory, else {settings.reference_permutations} orders. Max reported stderr: "
        "the largest standard error the sampled attribution gives for one of its contributions. "
        "Rank correlation: Spearman over all players' contributions. Shapley values of single "
        "players can be far larger than the target's score (positive and negative ones cancel), "
        "which is what makes sampling noisy."
    )
    report.tables.append(gap)

    example = measured[0] if settings.include_example else None
    if example is not None:
        ours = statistics.median(example.seconds)
        if example.dowhy.seconds:
            ratio = example.dowhy.median / ours
            same = example.attributions[0].root_causes[0].node == example.dowhy.top(0)
            report.checks.append(
                Check(
                    ">= 1000x faster than DoWhy-GCM on the 11-node example, same top node",
                    f"{ratio:,.0f}x ({ms(ours)} vs {ms(example.dowhy.median)}); top "
                    f"{example.attributions[0].root_causes[0].node} vs {example.dowhy.top(0)}",
                    ratio >= 1000 and same,
                )
            )
        else:
            report.checks.append(
                Check(
                    ">= 1000x faster than DoWhy-GCM on the 11-node example, same top node",
                    f"stream-rca {ms(ours)}; DoWhy-GCM: {example.dowhy.note}",
                    None,
                )
            )
    example_fast: Check | None = None
    if example is not None:
        ours = statistics.median(example.seconds)
        att = example.attributions[0]
        example_fast = Check(
            "<= 5 ms per anomaly on the 11-node example (all coalitions, with standard errors)",
            f"{ms(ours)} ({att.method}, {len(att.players)} players, {att.n_samples} draws; "
            f"CPU {ms(statistics.median(example.cpu_seconds))})",
            ours <= 0.005,
        )
        report.checks.append(example_fast)
    at50 = [m for m in measured if len(m.case.graph) == 50]
    if at50:
        t50 = statistics.median(at50[0].seconds)
        report.checks.append(
            Check(
                "< 50 ms per anomaly at 50 nodes",
                f"{ms(t50)} ({at50[0].case.players} players, {at50[0].attributions[0].method})",
                t50 < 0.05,
            )
        )
    slow = example_fast is not None and (report.checks[0].met is False or not example_fast.met)
    to_profile = [example] if example is not None and slow else []
    if at50 and report.checks[-1].met is False:
        to_profile.append(at50[0])
    for m in to_profile:
        snap = snapshot(m.case.graph, m.case.anomalies[0], float(m.case.train.shape[0]))
        report.profiles[f"Engine.explain, {m.case.name}"] = profile_text(
            partial(m.engine.explain, snap, m.case.target), repeat=5
        )
    return report
