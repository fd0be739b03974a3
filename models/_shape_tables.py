"""Exact TreeSHAP by table lookup, for boosters whose every root-to-leaf path reads at most two
columns.

LightGBM's ``pred_contrib`` runs the TreeSHAP recursion for every row and tree: some 60
``predict_proba`` calls of time on 200 trees of 15 leaves. The Shapley values it computes are
those of the *path-dependent* game: a tree's value for a coalition ``S`` of columns follows the
row's branch at a split on a column in ``S`` and the cover-weighted average of both branches
at any other split. That game is a sum over leaves: leaf ``l`` adds its value times, per column
``f`` its path splits on, ``o_f`` (1 if the row takes the leaf's branch at every split on
``f``, else 0) when ``f`` is in ``S`` and ``z_f`` (the product of the branch's cover shares at
those splits) when it is not. Shapley values are linear in the game, and a leaf's game involves
only its path's columns, so:

- a leaf on one column ``a`` gives ``a`` the share ``v * (o_a - z_a)`` and nothing else;
- a leaf on two columns gives ``a`` the share ``v * (o_a - z_a) * (o_b + z_b) / 2`` (the two
  orders of a two-player game, averaged), and ``b`` the mirror image.

``o_a`` only depends on which interval between the column's thresholds the row's value falls
in (or whether it is missing), so summed over every leaf of the booster each column's share is
a step function of one value (:attr:`ShapeTables.single`), plus, for each pair of columns that
share a path, a step function of two values (:attr:`ShapeTables.pairs`). Explaining a row is
then one ``searchsorted`` per column and two gathers per pair, not a walk of every tree.

Boosters fitted with ``interactions=1`` or ``2`` (LightGBM's ``interaction_constraints``,
:class:`models.BoostedWarningClassifier`) have that shape; :meth:`ShapeTables.of` says None for
any other, and the caller keeps ``pred_contrib``.

Missing values follow LightGBM's prediction: a column fitted with missing values sends NaN the
way each split's ``default_left`` says; one fitted without them reads NaN as 0; a value within
``1e-35f`` of zero reads as 0. Splits that treat zero as missing (``zero_as_missing``) and
categorical splits are not covered (:meth:`ShapeTables.of` says None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray

__all__ = ["TABLE_CHUNK_ROWS", "PairTable", "ShapeTables"]

TABLE_CHUNK_ROWS = 16_384
"""Rows binned and looked up at a time: their bins and shares stay a few MB, in cache."""

ZERO_THRESHOLD = float(np.float32(1e-35))
"""LightGBM's ``kZeroThreshold``: a dense input within it of zero is read as 0."""


@dataclass(frozen=True)
class PairTable:
    """The shares two columns ``a`` and ``b`` get from the leaves whose paths read both.

    ``map_a`` takes a row's bin of ``a`` among all the booster's thresholds on ``a`` to its bin
    among the thresholds of these leaves only (``map_b`` the same for ``b``); ``share_a`` and
    ``share_b`` hold the two shares per cell, flattened row-major over
    ``(local bins of a, local bins of b)``; ``width`` is the number of local bins of ``b``.
    """

    a: int
    b: int
    map_a: NDArray[np.intp]
    map_b: NDArray[np.intp]
    width: int
    share_a: NDArray[np.float64]
    share_b: NDArray[np.float64]


@dataclass(frozen=True)
class ShapeTables:
    """Per-column and per-pair step functions that add up to a booster's TreeSHAP values.

    A column ``j``'s value falls in bin ``searchsorted(thresholds[j], x)`` (``x <= t`` goes
    left, as LightGBM splits), or bin ``len(thresholds[j]) + 1`` when it is missing.
    ``single[j]`` is ``j``'s share from its one-column leaves per bin; ``pairs`` the two-column
    ones. ``expected`` is the booster's expected raw score (``pred_contrib``'s last column).
    """

    n_features: int
    thresholds: tuple[NDArray[np.float64], ...]
    single: tuple[NDArray[np.float64] | None, ...]
    pairs: tuple[PairTable, ...]
    expected: float

    @classmethod
    def of(cls, booster: lgb.Booster) -> ShapeTables | None:
        """The tables of ``booster`` (from its ``dump_model``), or None when a path reads more
        than two columns or a split is one the tables do not cover (see the module)."""
        dump = booster.dump_model()
        d = int(dump["max_feature_idx"]) + 1
        leaves: list[_Leaf] = []
        expected = 0.0
        for info in dump["tree_info"]:
            tree = _tree_leaves(info["tree_structure"])
            if tree is None:
                return None
            root_count = float(_count(info["tree_structure"]))
            for leaf in tree:
                if root_count > 0:
                    expected += leaf.value * leaf.count / root_count
                if leaf.splits:
                    leaves.append(leaf)
            if not tree:  # a one-leaf tree: its value is all expectation
                expected += float(info["tree_structure"]["leaf_value"])
        cuts: list[set[float]] = [set() for _ in range(d)]
        for leaf in leaves:
            for feature, splits in leaf.splits.items():
                cuts[feature].update(s.threshold for s in splits)
        thresholds = tuple(np.array(sorted(c), dtype=float) for c in cuts)
        single: list[NDArray[np.float64] | None] = [None] * d
        by_pair: dict[tuple[int, int], list[_Leaf]] = {}
        for leaf in leaves:
            columns = sorted(leaf.splits)
            if len(columns) == 1:
                j = columns[0]
                o, z = _on_path(leaf.splits[j], thresholds[j])
                table = single[j]
                if table is None:
                    table = single[j] = np.zeros(thresholds[j].size + 2)
                table += leaf.value * (o - z)
            else:
                by_pair.setdefault((columns[0], columns[1]), []).append(leaf)
        pairs = tuple(_pair_table(a, b, group, thresholds)
                      for (a, b), group in sorted(by_pair.items()))
        return cls(d, thresholds, tuple(single), pairs, expected)

    def shares(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """``(n_rows, n_features)`` TreeSHAP values of the raw score (``expected`` not
        included); a transposed view of a column-major matrix."""
        n, d = X.shape
        if d != self.n_features:
            raise ValueError(f"X has {d} columns, the booster {self.n_features}")
        out = np.zeros((d, n))
        used = [j for j in range(d) if self.thresholds[j].size]
        zero_fix = [bool(np.any((t >= -ZERO_THRESHOLD) & (t < ZERO_THRESHOLD)))
                    for t in self.thresholds]
        for start in range(0, n, TABLE_CHUNK_ROWS):
            stop = min(n, start + TABLE_CHUNK_ROWS)
            bins: dict[int, NDArray[np.intp]] = {}
            for j in used:
                column = X[start:stop, j]
                if zero_fix[j]:
                    column = np.where(np.abs(column) <= ZERO_THRESHOLD, 0.0, column)
                k = np.searchsorted(self.thresholds[j], column)
                k += np.isnan(column)
                bins[j] = k
                table = self.single[j]
                if table is not None:
                    out[j, start:stop] += table.take(k)
            for pair in self.pairs:
                cell = pair.map_a.take(bins[pair.a])
                cell *= pair.width
                cell += pair.map_b.take(bins[pair.b])
                out[pair.a, start:stop] += pair.share_a.take(cell)
                out[pair.b, start:stop] += pair.share_b.take(cell)
        return out.T


@dataclass(frozen=True)
class _Split:
    """One split on a leaf's path: its threshold, whether the path goes left, where a missing
    value goes (True: left), and the path's branch's share of the split's cover."""

    threshold: float
    left: bool
    missing_left: bool
    cover: float


@dataclass(frozen=True)
class _Leaf:
    value: float
    count: float
    splits: dict[int, list[_Split]]


def _count(node: dict[str, Any]) -> float:
    return float(node["internal_count"] if "split_index" in node else node["leaf_count"])


def _tree_leaves(root: dict[str, Any]) -> list[_Leaf] | None:
    """Every leaf of a tree with the splits on its path by column; None when a path reads more
    than two columns or a split is not a plain numeric one."""
    if "split_index" not in root:
        return []
    out: list[_Leaf] = []
    stack: list[tuple[dict[str, Any], dict[int, list[_Split]]]] = [(root, {})]
    while stack:
        node, path = stack.pop()
        if "split_index" not in node:
            out.append(_Leaf(float(node["leaf_value"]), _count(node), path))
            continue
        if node.get("decision_type") != "<=" or node.get("missing_type") not in ("None", "NaN"):
            return None
        feature, threshold = int(node["split_feature"]), float(node["threshold"])
        if feature not in path and len(path) == 2:
            return None
        if node["missing_type"] == "NaN":
            missing_left = bool(node["default_left"])
        else:  # no missing values when fitted: LightGBM reads NaN as 0
            missing_left = threshold >= 0.0
        total = _count(node)
        for side, left in (("left_child", True), ("right_child", False)):
            child = node[side]
            split = _Split(threshold, left, missing_left, _count(child) / total)
            stack.append((child, {**path, feature: [*path.get(feature, []), split]}))
    return out


def _on_path(splits: list[_Split], cuts: NDArray[np.float64]
             ) -> tuple[NDArray[np.float64], float]:
    """Per bin of ``cuts`` (numeric bins, then the missing one): 1.0 where a value there takes
    the path's branch at each of ``splits``; and the product of their cover shares."""
    numeric = np.arange(cuts.size + 1)
    o = np.ones(cuts.size + 2)
    z = 1.0
    for split in splits:
        m = int(np.searchsorted(cuts, split.threshold))
        goes_left = numeric <= m
        o[:-1] *= goes_left if split.left else ~goes_left
        o[-1] *= split.missing_left == split.left
        z *= split.cover
    return o, z


def _local(cuts: NDArray[np.float64], everywhere: NDArray[np.float64]) -> NDArray[np.intp]:
    """The map from a bin among ``everywhere``'s thresholds to one among ``cuts`` (a subset)."""
    numeric = np.concatenate([[0], np.searchsorted(cuts, everywhere, side="right")])
    return np.concatenate([numeric, [cuts.size + 1]]).astype(np.intp)


def _pair_table(a: int, b: int, leaves: list[_Leaf],
                thresholds: tuple[NDArray[np.float64], ...]) -> PairTable:
    cuts_a = np.array(sorted({s.threshold for leaf in leaves for s in leaf.splits[a]}))
    cuts_b = np.array(sorted({s.threshold for leaf in leaves for s in leaf.splits[b]}))
    share_a = np.zeros((cuts_a.size + 2, cuts_b.size + 2))
    share_b = np.zeros_like(share_a)
    for leaf in leaves:
        o_a, z_a = _on_path(leaf.splits[a], cuts_a)
        o_b, z_b = _on_path(leaf.splits[b], cuts_b)
        half = 0.5 * leaf.value
        share_a += half * np.outer(o_a - z_a, o_b + z_b)
        share_b += half * np.outer(o_a + z_a, o_b - z_b)
    return PairTable(a, b, _local(cuts_a, thresholds[a]), _local(cuts_b, thresholds[b]),
                     cuts_b.size + 2, share_a.ravel(), share_b.ravel())
