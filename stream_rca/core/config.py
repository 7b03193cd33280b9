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
        Size of each noise model's recency-weighted sample.
    forgetting
        Per-snapshot forgetting of the linear mechanisms (``1/forgetting`` snapshots of memory).
    ridge
        Relative ridge penalty of the linear mechanisms.
    protect
        A node whose conditional score reaches this does not learn from the snapshot.
    trigger
        Incident thresholds of the watched targets.
    n_samples
        Monte Carlo draws per coalition in attributions.
    exact_max_players
        Exact Shapley values up to this many players; permutation sampling beyond.
    n_permutations
        Player orders sampled (in antithetic pairs) beyond ``exact_max_players``.
    generic_samples
        Draws per coalition when a non-linear mechanism is on the way (they are slower).
    impute_learn
        A node still learns when at most this share of its parents is missing (and imputed);
        real metric exports have gaps, and a node with many parents would otherwise rarely
        see all of them at once.
    seed
        Base seed; every attribution derives its own seed from it and the incident id.
    """

    warmup: int = 100
    reservoir: int = 512
    forgetting: float = 1e-3
    ridge: float = 1e-6
    protect: float = 6.0
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    n_samples: int = 512
    exact_max_players: int = 12
    n_permutations: int = 64
    generic_samples: int = 200
    impute_learn: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.warmup < 10:
            raise ValueError(f"warmup must be at least 10 snapshots, got {self.warmup}")
        if self.n_samples < 50 or self.generic_samples < 50:
            raise ValueError("n_samples and generic_samples must be at least 50")
        if self.protect <= 0:
            raise ValueError("protect must be positive")
