"""Exact TreeSHAP by table lookup, for boosters whose every root-to-leaf path reads at most three
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
  orders of a two-player game, averaged), and ``b`` the mirror image;
- a leaf on three gives ``a`` ``v * (o_a - z_a) * (z_b z_c / 3 + (o_b z_c + z_b o_c) / 6
  + o_b o_c / 3)`` (Shapley's weights ``|S|! (m - |S| - 1)! / m!`` of each coalition ``S`` of
  the others).

``o_a`` only depends on which interval between the column's thresholds the row's value falls
in (or whether it is missing), so summed over all leaves that read the same set of columns
each of those columns' share is a step function of their values: one table per set of one to
three columns (:attr:`ShapeTables.groups`). Explaining a row is then one ``searchsorted`` per
column and one gather per column of each set, not a walk of every tree.

Boosters fitted with ``interactions=1``, ``2`` or ``3`` (LightGBM's
``interaction_constraints``, :class:`models.BoostedWarningClassifier`) have that shape;
:meth:`ShapeTables.of` says None for any other, and the caller keeps ``pred_contrib``.

Missing values follow LightGBM's prediction: a column fitted with missing values sends NaN the
way each split's ``default_left`` says; one fitted without them reads NaN as 0; a value within
``1e-35f`` of zero reads as 0. Splits that treat zero as missing (``zero_as_missing``) and
categorical splits are not covered (:meth:`ShapeTables.of` says None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray

__all__ = ["MAX_COLUMNS", "TABLE_CHUNK_ROWS", "GroupTable", "ShapeTables"]

TABLE_CHUNK_ROWS = 16_384
"""Rows binned and looked up at a time: their bins and shares stay a few MB, in cache."""

MAX_COLUMNS = 3
"""The most columns one root-to-leaf path may read for the tables to cover the booster: a set
of ``m`` columns gets an ``m``-dimensional table, and three is where their cells and the
number of sets stay small next to the trees."""

ZERO_THRESHOLD = float(np.float32(1e-35))
"""LightGBM's ``kZeroThreshold``: a dense input within it of zero is read as 0."""


@dataclass(frozen=True)
class GroupTable:
    """The shares a set of columns gets from the leaves whose paths read exactly those columns.

    ``maps[i]`` takes a row's bin of ``columns[i]`` among all the booster's thresholds on it to
    its bin among the thresholds of these leaves only; ``shape`` is the number of those local
    bins per column, and ``shares[i]`` holds the share of ``columns[i]`` per cell, flattened
    row-major over ``shape``.
    """

    columns: tuple[int, ...]
    maps: tuple[NDArray[np.intp], ...]
    shape: tuple[int, ...]
    shares: tuple[NDArray[np.float64], ...]


@dataclass(frozen=True)
class ShapeTables:
    """Per-set step functions that add up to a booster's TreeSHAP values.

    A column ``j``'s value falls in bin ``searchsorted(thresholds[j], x)`` (``x <= t`` goes
    left, as LightGBM splits), or bin ``len(thresholds[j]) + 1`` when it is missing.
    ``groups`` holds one :class:`GroupTable` per set of columns some leaf's path reads.
    ``expected`` is the booster's expected raw score (``pred_contrib``'s last column).
    """

    n_features: int
    thresholds: tuple[NDArray[np.float64], ...]
    groups: tuple[GroupTable, ...]
    expected: float

    @classmethod
    def of(cls, booster: lgb.Booster) -> ShapeTables | None:
        """The tables of ``booster`` (from its ``dump_model``), or None when a path reads more
        than :data:`MAX_COLUMNS` columns or a split is one the tables do not cover (see the
        module)."""
        dump = booster.dump_model()
        d = int(dump["max_feature_idx"]) + 1
        by_set: dict[tuple[int, ...], list[_Leaf]] = {}
        expected = 0.0
        for info in dump["tree_info"]:
            root = info["tree_structure"]
            if "split_index" not in root:  # a one-leaf tree: its value is all expectation
                expected += float(root["leaf_value"])
                continue
            tree = _tree_leaves(root)
            if tree is None:
                return None
            root_count = _count(root)
            for leaf in tree:
                if root_count > 0:
                    expected += leaf.value * leaf.count / root_count
                by_set.setdefault(tuple(sorted(leaf.splits)), []).append(leaf)
        cuts: list[set[float]] = [set() for _ in range(d)]
        for leaves in by_set.values():
            for leaf in leaves:
                for feature, splits in leaf.splits.items():
                    cuts[feature].update(s.threshold for s in splits)
        thresholds = tuple(np.array(sorted(c), dtype=float) for c in cuts)
        groups = tuple(_group_table(columns, leaves, thresholds)
                       for columns, leaves in sorted(by_set.items()))
        return cls(d, thresholds, groups, expected)

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
            for group in self.groups:
                cell = group.maps[0].take(bins[group.columns[0]])
                for c, local, width in zip(group.columns[1:], group.maps[1:],
                                           group.shape[1:], strict=True):
                    cell *= width
                    cell += local.take(bins[c])
                for c, share in zip(group.columns, group.shares, strict=True):
                    out[c, start:stop] += share.take(cell)
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
    than :data:`MAX_COLUMNS` columns or a split is not a plain numeric one."""
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
        if feature not in path and len(path) == MAX_COLUMNS:
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


def _shapley_weight(size: int, players: int) -> float:
    """Shapley's weight of a coalition of ``size`` others among ``players``."""
    return (math.factorial(size) * math.factorial(players - size - 1)
            / math.factorial(players))


def _group_table(columns: tuple[int, ...], leaves: list[_Leaf],
                 thresholds: tuple[NDArray[np.float64], ...]) -> GroupTable:
    """Each column's share from ``leaves`` (all reading exactly ``columns``) per cell."""
    m = len(columns)
    cuts = [np.array(sorted({s.threshold for leaf in leaves for s in leaf.splits[c]}))
            for c in columns]
    shape = tuple(c.size + 2 for c in cuts)
    shares = [np.zeros(shape) for _ in columns]
    axes = [tuple(-1 if i == j else 1 for j in range(m)) for i in range(m)]
    for leaf in leaves:
        on = [_on_path(leaf.splits[c], cut) for c, cut in zip(columns, cuts, strict=True)]
        for i in range(m):
            # by_size[s]: the sum over coalitions of s others of their o's and the rest's z's
            by_size: list[NDArray[np.float64]] = [np.ones((1,) * m)]
            for j in range(m):
                if j == i:
                    continue
                o_j, z_j = on[j][0].reshape(axes[j]), on[j][1]
                grown = [p * z_j for p in by_size] + [np.zeros((1,) * m)]
                for s, p in enumerate(by_size):
                    grown[s + 1] = grown[s + 1] + p * o_j
                by_size = grown
            weighted = sum(_shapley_weight(s, m) * p for s, p in enumerate(by_size))
            o_i, z_i = on[i][0].reshape(axes[i]), on[i][1]
            shares[i] += leaf.value * (o_i - z_i) * weighted
    return GroupTable(columns, tuple(_local(cut, thresholds[c]) for c, cut in
                                     zip(columns, cuts, strict=True)),
                      shape, tuple(s.ravel() for s in shares))
