"""The structure a model is fitted on: the causal graph less the nodes marginalised out.

Real metric exports have nodes with too little data (a service that logs one request an hour).
Their mechanisms cannot be learned, and as parents they make their children's models learn
from imputed values. Marginalising such a node removes it from the model and connects its
parents to its children, so that every ancestor keeps its path to every descendant (the
marginal of a causal DAG over the remaining nodes, up to latent confounding). The rule looks at
how much data a node has (its coverage), never at its name.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["marginalise_parents", "sparse_nodes"]

IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


def sparse_nodes(present: BoolArray, min_coverage: float, keep: Collection[int]) -> list[int]:
    """Positions of the nodes with values in fewer than ``min_coverage`` of the rows.

    ``present`` is ``(rows, nodes)``; nodes in ``keep`` (the watched targets) are never listed.

    >>> import numpy as np
    >>> p = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]], dtype=bool)
    >>> sparse_nodes(p, 0.5, keep={0})
    [2]
    """
    if present.shape[0] == 0 or min_coverage <= 0.0:
        return []
    coverage = present.mean(axis=0)
    return [int(j) for j in np.flatnonzero(coverage < min_coverage) if int(j) not in keep]


def marginalise_parents(
    parent_index: Sequence[IntArray], order: Sequence[int], drop: Collection[int]
) -> list[IntArray]:
    """Parent positions once the nodes in ``drop`` are marginalised out.

    ``order`` is a topological order of the positions. A dropped node gets no parents and is
    nobody's parent; a node whose parent was dropped inherits that parent's (effective)
    parents.

    >>> import numpy as np
    >>> e = np.array([], dtype=np.intp)
    >>> parents = [e, np.array([0]), np.array([1]), np.array([1, 2])]  # 0 -> 1 -> 2 -> 3, 1 -> 3
    >>> [p.tolist() for p in marginalise_parents(parents, [0, 1, 2, 3], {1})]
    [[], [], [0], [0, 2]]
    """
    dropped = set(drop)
    effective: dict[int, list[int]] = {}
    for j in order:
        seen: list[int] = []
        for p in parent_index[j]:
            for q in effective[int(p)] if int(p) in dropped else [int(p)]:
                if q not in seen:
                    seen.append(q)
        effective[j] = seen
    return [
        np.array([] if j in dropped else sorted(effective[j]), dtype=np.intp)
        for j in range(len(parent_index))
    ]
