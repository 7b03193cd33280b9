"""Plain parameters of the engine (the entry point's settings object builds them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream_rca.core.trigger import TriggerConfig

__all__ = ["EngineConfig"]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Plain parameters of an :class:`Engine`.

    Parameters
    ----------
    warmup
        Snapshots a node's models must learn from before it is scored.
    reservoir
        Size of each noise model's recency-weighted sample (a mean age of ``reservoir``
        snapshots; its largest and smallest 5 % feed the generalised Pareto tails).
    refit_every
        Models learn in steps of this many snapshots, at fixed positions of the stream (every
        ``refit_every``-th snapshot since the start): every snapshot in between is scored against
        the same frozen models. So any partition of a stream into blocks gives the same state,
        scores and incidents as record-by-record processing.
    refit_growth
        Longest period, as a multiple of ``refit_every`` (a power of two; 1, the default,
        keeps the period fixed). The period doubles each time the stream doubles from
        ``16 * refit_every`` snapshots on (with 4: 16 -> 32 at 256 -> 64 at 512), so a refit
        never waits for more than an eighth of the snapshots seen; the positions depend on the
        count alone (see :meth:`refit_period`). Each refit's cost is shared by more snapshots
        (the block path runs about 2x faster with 4), but a model that waits longer is slower
        to take in a level shift: on PetShop's availability series (ties at one value) 4 nats
        are reached 4x and 6 nats 29x as often as promised with 2 or 4, against 0.14x and
        0.10x with 1.
    forgetting
        Per-snapshot forgetting of the linear mechanisms (``1/forgetting`` snapshots of memory).
    ridge
        Relative ridge penalty of the linear mechanisms.
    protect
        A node whose conditional score reaches this does not update its mechanism from the
        snapshot, and a target whose marginal score reaches it does not update its marginal
        model; nothing learns from a snapshot while an incident is open on a target. High
        (12 nats, once in 160,000 snapshots of normal operation) because a lower level trims
        exactly the rare normal values the tails need: at 6 nats the trigger over-alarms 10x.
        The price: a recurring fault too small to open an incident is learned as normal.
    protect_noise
        The same for the noise models (at least ``protect``).
    trigger
        Incident thresholds of the watched targets.
    n_samples
        Monte Carlo draws per coalition in attributions.
    exact_max_players
        Exact Shapley values up to this many players; permutation sampling beyond.
    n_permutations
        Least number of player orders sampled (in antithetic pairs) beyond
        ``exact_max_players``; at least two per player are sampled. 128 (it was 64): with
        32 players (PetShop), a contribution's standard error was often more than half of it,
        and the order of the first causes turned on ties; twice the orders cost about twice the
        time of a sampled attribution (still well within 50 ms at 50 nodes).
    generic_samples
        Draws per coalition when a non-linear mechanism is on the way (they are slower).
    impute_learn
        A node still learns when at most this share of its parents is missing (and imputed);
        real metric exports have gaps, and a node with many parents would otherwise rarely
        see all of them at once.
    min_coverage
        At the end of the warm-up, a node (other than a target) with values in fewer than this
        share of the warm-up snapshots is marginalised: removed from the model, its parents
        connected to its children, so that ancestry is kept; results name it. 0 keeps all.
    rank_by
        The rule that orders root causes (see :mod:`stream_rca.core.ranking`).
    refresh_residuals
        Keep, beside every residual a linear mechanism's noise model holds, the node's and its
        parents' values, and recompute the held residuals with the current mechanism after
        each learning step (a slowly moving mechanism then never leaves its current residuals
        at the edge of a sample learned under older fits). Costs ``8 * reservoir`` bytes per
        node with parents and per edge (about 2.5x the state of a graph without it: graphs of
        more than about 650 nodes then exceed a 16 MiB checkpoint at the default reservoir);
        false keeps the residuals as they were computed when learned.
    predictive_scores
        Score each residual against its noise widened by the mechanism's own estimation error
        at the snapshot's parent values (the least-squares prediction variance, see
        :meth:`~stream_rca.core.linear.LinearBank.spread`): a child whose parent is far out
        under a fault is not blamed for the parent's deviation times a coefficient's standard
        error. At normal parent values this widens by a fraction of a percent. False scores the
        raw residual.
    seed
        Base seed; every attribution derives its own seed from it and the incident id.
    """

    warmup: int = 100
    reservoir: int = 1024
    refit_every: int = 16
    refit_growth: int = 1
    forgetting: float = 1e-3
    ridge: float = 1e-6
    protect: float = 12.0
    protect_noise: float = 12.0
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    n_samples: int = 512
    exact_max_players: int = 12
    n_permutations: int = 128
    generic_samples: int = 200
    impute_learn: float = 0.5
    min_coverage: float = 0.5
    rank_by: str = "anomalous-first"
    refresh_residuals: bool = True
    predictive_scores: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.warmup < 10:
            raise ValueError(f"warmup must be at least 10 snapshots, got {self.warmup}")
        if self.n_samples < 50 or self.generic_samples < 50:
            raise ValueError("n_samples and generic_samples must be at least 50")
        if self.protect <= 0 or self.protect_noise < self.protect:
            raise ValueError("protect must be positive and protect_noise at least protect")
        if self.reservoir < 64:
            raise ValueError(f"reservoir must be at least 64, got {self.reservoir}")
        if not 1 <= self.refit_every <= 1024:
            raise ValueError(f"refit_every must be in [1, 1024], got {self.refit_every}")
        growth = self.refit_growth
        if not 1 <= growth <= 64 or growth & (growth - 1):
            raise ValueError(f"refit_growth must be a power of two in [1, 64], got {growth}")
        if not 0.0 <= self.min_coverage < 1.0:
            raise ValueError(f"min_coverage must be in [0, 1), got {self.min_coverage}")
        if self.n_permutations < 2:
            raise ValueError(f"n_permutations must be at least 2, got {self.n_permutations}")
        if not 0 <= self.exact_max_players <= 16:
            raise ValueError(f"exact_max_players must be in [0, 16], got {self.exact_max_players}")
        if not 0.0 <= self.forgetting < 1.0:
            raise ValueError(f"forgetting must be in [0, 1), got {self.forgetting}")
        if self.ridge < 0.0 or not 0.0 <= self.impute_learn <= 1.0:
            raise ValueError("ridge must be >= 0 and impute_learn in [0, 1]")

    def refit_period(self, n: int) -> int:
        """The learning period that the ``n``-th snapshot (counting from 0) belongs to.

        ``refit_every`` up to ``16 * refit_every`` snapshots, then doubled each time the count
        doubles, up to ``refit_growth * refit_every``. Every period starts at a multiple of its
        length, so a stream is cut at the same positions whatever its blocks: a period ends
        after snapshot ``n`` exactly when ``(n + 1) % refit_period(n) == 0``.

        Examples
        --------
        >>> cfg = EngineConfig(refit_growth=4)
        >>> [cfg.refit_period(n) for n in (0, 255, 256, 511, 512, 10**6)]
        [16, 16, 32, 32, 64, 64]
        >>> EngineConfig().refit_period(10**6)
        16
        """
        period, start = self.refit_every, 16 * self.refit_every
        while period < self.refit_growth * self.refit_every and n >= start:
            period, start = 2 * period, 2 * start
        return period
