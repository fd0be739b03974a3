"""Hand-written LightGBM model text for tests that check attributions by hand.

Two trees over columns ``a``, ``b``, ``c``: tree 0 splits ``a <= 0.5`` to a leaf of -1, else
``b <= 0.5`` to 0.2 or 1.4; tree 1 reads ``c`` twice on a path (``c <= 0.5``, then
``c <= 0.25``: leaves -0.5 and 0.1; else 0.3). The tests choose tree 0's decision types (which
side a missing value goes) and internal values.
"""

from __future__ import annotations

_TEMPLATE = """tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=2
objective=binary sigmoid:1
feature_names=a b c
feature_infos=[0:1] [0:1] [0:1]

Tree=0
num_leaves=3
num_cat=0
split_feature=0 1
split_gain=1 1
threshold=0.5 0.5
decision_type={d0} {d1}
left_child=-1 -2
right_child=1 -3
leaf_value=-1 0.2 1.4
leaf_weight=1 1 1
leaf_count=10 10 10
internal_value={i0} {i1}
internal_weight=3 2
internal_count=30 20
is_linear=0
shrinkage=1


Tree=1
num_leaves=3
num_cat=0
split_feature=2 2
split_gain=1 1
threshold=0.5 0.25
decision_type=2 2
left_child=1 -1
right_child=-3 -2
leaf_value=-0.5 0.1 0.3
leaf_weight=1 1 1
leaf_count=10 10 10
internal_value=0 -0.2
internal_weight=3 2
internal_count=30 20
is_linear=0
shrinkage=1


end of trees
"""


def two_trees(decision_types: tuple[int, int] = (2, 2),
              internal_values: tuple[float, float] = (0.1, 0.5)) -> str:
    """The model text, with tree 0's two ``decision_type`` and ``internal_value`` entries."""
    return _TEMPLATE.format(d0=decision_types[0], d1=decision_types[1],
                            i0=internal_values[0], i1=internal_values[1])
