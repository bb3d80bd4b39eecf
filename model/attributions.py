"""XGBoost's path attributions for one row in numpy, bit for bit, without building a DMatrix.

``/score`` explains each answer with XGBoost's ``pred_contribs=True, approx_contribs=True`` (Saabas path
attributions: at every split on the row's path, the change in the node's mean value goes to the split's
feature; the bias column holds the root means and the base margin). Asking XGBoost for one row costs a
DMatrix (~80-110 µs of C++ set-up on this machine, whatever the row count) and the prediction call
(~75 µs): most of the CPU of a ``/score`` past HTTP.

:class:`PathAttributions` does the same arithmetic in float32 from the model's JSON dump:

- every node's mean value is XGBoost's (a leaf's value; an inner node's children's means weighted by
  their hessian sums, in XGBoost's order of operations);
- each leaf's contributions are summed along its path in float32 as XGBoost sums them for one tree, and
  the trees' vectors are added in tree order;
- the row's leaves are found by evaluating every split once (``x < threshold`` goes left, a missing value
  takes the default side) and then following the chosen children down, all trees at once.

The bias column is row-independent, so it is taken from XGBoost itself. :meth:`PathAttributions.of` checks
the result against XGBoost on 256 rows made of the model's thresholds, values one ulp below them and
missing values (:func:`_check_rows`), and refuses the model if a single bit differs, or if the model has
something this does not cover (categorical splits, DART, more than one tree per round or output). The
scorer then keeps XGBoost's path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

#: Rows the start-up check compares with XGBoost (thresholds, one ulp below them, missing values).
CHECK_ROWS = 256
#: Largest leaves x features table kept (float32 values, 64 MB); a bigger model keeps XGBoost's path.
MAX_TABLE_VALUES = 16_000_000


@dataclass(frozen=True)
class PathAttributions:
    """Approximate (Saabas) contributions of one row, equal to XGBoost's ``approx_contribs`` bit for bit."""

    roots: np.ndarray  # int64 (trees,): the root node of each tree in the flat node arrays
    feature: np.ndarray  # int64 (nodes,): split feature (0 for leaves)
    threshold: np.ndarray  # float32 (nodes,): split threshold (+inf for leaves: any value goes "left")
    children: np.ndarray  # int64 (nodes * 3,): left, right, missing child of each node (a leaf points to itself)
    first_child: np.ndarray  # int64 (nodes,): 3 * node, where a node's children start in ``children``
    leaf_row: np.ndarray  # int64 (nodes,): a leaf's row in leaf_vectors (-1 for inner nodes)
    leaf_vectors: np.ndarray  # float32 (leaves, features): each leaf's path contributions
    depth: int
    bias: np.float32
    n_features: int

    @classmethod
    def of(cls, booster: xgb.Booster, iteration_range: tuple[int, int]) -> PathAttributions | None:
        """The model's attributions over ``iteration_range``, or None if they do not match XGBoost exactly."""
        model = json.loads(booster.save_raw(raw_format="json"))["learner"]
        trees_model = model["gradient_booster"]
        if trees_model.get("name") != "gbtree":
            return None
        params = trees_model["model"]["gbtree_model_param"]
        n_features = int(model["learner_model_param"]["num_feature"])
        if int(params["num_parallel_tree"]) != 1 or int(model["learner_model_param"].get("num_target", 1)) > 1:
            return None
        if int(model["learner_model_param"].get("num_class", 0)) > 1:
            return None
        start, end = iteration_range
        trees = trees_model["model"]["trees"][start:end]
        if not trees or any(any(tree["split_type"]) or tree["categories"] for tree in trees):
            return None
        leaves = sum(tree["left_children"].count(-1) for tree in trees)
        if leaves * n_features > MAX_TABLE_VALUES:
            return None
        built = cls._build(trees, n_features)
        check = _check_rows(built, n_features)
        expected = booster.predict(
            xgb.DMatrix(check, nthread=1),
            pred_contribs=True,
            approx_contribs=True,
            iteration_range=iteration_range,
            validate_features=False,
        )
        attributions = cls(**{**built, "bias": np.float32(expected[0, -1]), "n_features": n_features})
        got = np.vstack([attributions.contributions(row) for row in check])
        return attributions if np.array_equal(got.view(np.uint32), expected.view(np.uint32)) else None

    @staticmethod
    def _build(trees: list[dict], n_features: int) -> dict:
        """Flat node arrays of all trees and each leaf's float32 path vector."""
        features, thresholds, children, vectors, roots, leaves = [], [], [], [], [], []
        depth, offset = 0, 0
        for tree in trees:
            left = np.asarray(tree["left_children"], dtype=np.int64)
            right = np.asarray(tree["right_children"], dtype=np.int64)
            split = np.asarray(tree["split_indices"], dtype=np.int64)
            cond = np.asarray(tree["split_conditions"], dtype=np.float32)
            hess = np.asarray(tree["sum_hessian"], dtype=np.float32)
            default_left = np.asarray(tree["default_left"], dtype=bool)
            n = len(left)
            leaf = left == -1
            mean = _node_means(left, right, cond, hess, leaf)
            vector = np.zeros((n, n_features), dtype=np.float32)
            # Walk every root-to-leaf path, summing as XGBoost does for one tree (float32, in path order).
            stack: list[tuple[int, list[tuple[int, np.float32]]]] = [(0, [])]
            while stack:
                node, path = stack.pop()
                if leaf[node]:
                    depth = max(depth, len(path))
                    acc = np.zeros(n_features, dtype=np.float32)
                    last = 0
                    for feature, delta in path:
                        acc[feature] = acc[feature] + delta
                        last = feature
                    if path:  # XGBoost adds the leaf value minus the leaf's mean (a zero) to the last split
                        acc[last] = acc[last] + (cond[node] - mean[node])
                    vector[node] = acc
                    continue
                for child in (left[node], right[node]):
                    stack.append((int(child), [*path, (int(split[node]), mean[child] - mean[node])]))
            own = np.arange(n, dtype=np.int64)
            missing = np.where(default_left, left, right)
            children.append(
                np.stack([np.where(leaf, own, left), np.where(leaf, own, right), np.where(leaf, own, missing)], axis=1)
                + offset
            )
            features.append(np.where(leaf, 0, split))
            thresholds.append(np.where(leaf, np.float32(np.inf), cond))
            vectors.append(vector[leaf])
            leaves.append(leaf)
            roots.append(offset)
            offset += n
        leaf_of = np.concatenate(leaves)
        leaf_row = np.full(len(leaf_of), -1, dtype=np.int64)
        leaf_row[leaf_of] = np.arange(int(leaf_of.sum()), dtype=np.int64)
        return {
            "roots": np.asarray(roots, dtype=np.int64),
            "leaf_row": leaf_row,
            "feature": np.concatenate(features),
            "threshold": np.concatenate(thresholds),
            "children": np.concatenate(children).ravel(),
            "first_child": np.arange(0, 3 * offset, 3, dtype=np.int64),
            "leaf_vectors": np.concatenate(vectors),
            "depth": depth,
        }

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf each tree sends the float32 row ``x`` (``n_features`` values) to (flat node ids)."""
        value = x[self.feature]
        side = (~(value < self.threshold)).astype(np.int64)  # 0: left (x < threshold), 1: right
        missing = np.isnan(value)
        if missing.any():
            side[missing] = 2
        side += self.first_child  # each node's 3 children start at 3 * node
        step = self.children[side]
        node = self.roots
        for _ in range(self.depth):
            node = step[node]
        return node

    def contributions(self, row: np.ndarray) -> np.ndarray:
        """``(1, features + 1)`` float32 contributions of one feature row, bias last, as XGBoost gives them."""
        x = np.asarray(row, dtype=np.float32).reshape(-1)
        if len(x) != self.n_features:
            raise ValueError(f"a row of {len(x)} values for a model of {self.n_features} features")
        out = np.empty((1, self.n_features + 1), dtype=np.float32)
        # Trees' vectors added one after another in tree order, in float32 (cumsum is sequential).
        out[0, :-1] = np.cumsum(self.leaf_vectors[self.leaf_row[self.leaves(x)]], axis=0, dtype=np.float32)[-1]
        out[0, -1] = self.bias
        return out


def _node_means(
    left: np.ndarray, right: np.ndarray, cond: np.ndarray, hess: np.ndarray, leaf: np.ndarray
) -> np.ndarray:
    """XGBoost's node mean values in float32: leaf value, or children's means weighted by hessian sums."""
    mean = np.zeros(len(left), dtype=np.float32)
    order: list[int] = []
    stack = [0]
    while stack:  # parents before children; reversed, children before parents
        node = stack.pop()
        order.append(node)
        if not leaf[node]:
            stack += [int(left[node]), int(right[node])]
    for node in reversed(order):
        if leaf[node]:
            mean[node] = cond[node]
        else:
            lo, hi = left[node], right[node]
            value = np.float32(mean[lo] * hess[lo])
            value = np.float32(value + np.float32(mean[hi] * hess[hi]))
            mean[node] = np.float32(value / hess[node])
    return mean


def _check_rows(built: dict, n_features: int) -> np.ndarray:
    """:data:`CHECK_ROWS` rows of thresholds, values one ulp below them, zeros, and 5% missing values.

    Each feature's column goes through all of its values before repeating one, so every threshold of a
    feature with up to ~85 of them is met exactly and from one ulp below; the combinations are random.
    """
    rng = np.random.default_rng(0)
    inner = np.isfinite(built["threshold"])
    feature, threshold = built["feature"][inner], built["threshold"][inner]
    rows = np.zeros((CHECK_ROWS, n_features), dtype=np.float32)
    for f in range(n_features):
        cuts = threshold[feature == f]
        pool = (
            np.concatenate([cuts, np.nextafter(cuts, np.float32(-np.inf)), [np.float32(0)]])
            if len(cuts)
            else np.zeros(1, dtype=np.float32)
        )
        rows[:, f] = np.resize(rng.permutation(pool), CHECK_ROWS)  # each value once before any repeats
    rows[rng.random(rows.shape) < 0.05] = np.nan
    return rows
