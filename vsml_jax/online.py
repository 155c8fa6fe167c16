"""A meta-learned learner on ordinary data: an online session over a stream.

``trained.start(key, input_dim, num_classes)`` (see :mod:`vsml_jax.loading`) returns a
:class:`Session`. It holds the learner's state between calls:

* ``predict(x)`` -> class probabilities for ``x``; the learner reads ``x`` (and the
  feedback on its previous prediction, if that was observed) and updates its state;
* ``observe(x, y)`` -> tells it the label of ``x`` (predicting ``x`` first unless it was
  the last input predicted); the next step reads the error on it;
* ``run(xs, ys)`` -> the same over a whole numpy stream in one jitted scan, continuing
  from the session's state: per-step predictions, probabilities and online accuracy.

Inputs go through the preprocessing the learner was meta-trained with: standardised
(with ``mean`` / ``std``, or the stream's own statistics), then projected by a fixed
random ``N(0, 1/D)`` matrix to its input size if it was trained on projected tasks,
resized if it was trained on square images of another size, else zero-padded.
VSML reads any input size as it is.

Bad input is refused before the learner reads any of it, so the session's state is
unchanged and the session can go on with clean data: a non-finite input value (NaN or
infinity; one such value would make every later prediction NaN) raises ``ValueError``
naming the step, as do a label that is not a whole number in ``0..C-1`` (e.g. ``1.7``,
never truncated) and an empty stream.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vsml_jax.episode import online_step
from vsml_jax.learners.base import Feedback, TaskSpec, first_classes


class StreamResult(NamedTuple):
    """Per-step outputs of :meth:`Session.run`: ``predictions [T]``, ``probs [T, C]``,
    ``accuracy [T]`` (online: each prediction made before its label was seen)."""

    predictions: np.ndarray
    probs: np.ndarray
    accuracy: np.ndarray


def _input_map(trained, key, input_dim, dtype=jnp.float32):
    """``(A, f)``: the learner's input size on this stream and ``f: [.., D] -> [.., A]``."""
    shape = tuple(input_dim) if isinstance(input_dim, tuple | list) else (int(input_dim),)
    d = math.prod(shape)
    how, a = trained.input_plan(d, shape if len(shape) >= 2 else None)
    if how == "project":
        w = jax.random.normal(key, (d, a), dtype) / jnp.sqrt(jnp.asarray(d, dtype))
        return a, lambda x: jnp.dot(x, w, precision=jax.lax.Precision.HIGHEST)
    if how == "resize":
        (h, w_), side = shape[:2], math.isqrt(a)

        def resize(x):
            img = x.reshape(*x.shape[:-1], h, w_, -1).mean(-1)
            out = jax.image.resize(img, (*img.shape[:-2], side, side), "linear")
            return out.reshape(*x.shape[:-1], a)

        return a, resize
    if how == "pad":
        return a, lambda x: jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, a - d)])
    return d, lambda x: x


class Session:
    """An online run of a :class:`~vsml_jax.loading.TrainedLearner` (see module doc)."""

    def __init__(self, trained, key, input_dim, num_classes: int, mean=None, std=None):
        if num_classes > trained.task.num_classes and trained.config.learner != "vsml":
            raise ValueError(
                f"learner {trained.name!r} has {trained.task.num_classes} outputs; it cannot "
                f"classify {num_classes} classes"
            )
        self.trained, self.num_classes = trained, int(num_classes)
        self.mean, self.std = mean, std
        k_proj, k_init = jax.random.split(key)
        self.input_size, self._map = _input_map(trained, k_proj, input_dim)
        self._d = math.prod(input_dim) if isinstance(input_dim, tuple | list) else int(input_dim)
        learner, mp, c = trained.learner, trained.meta_params, self.num_classes
        if trained.config.learner != "vsml":  # a fixed output count: predict among c of them
            learner = first_classes(learner, trained.task.num_classes, c)
        task = TaskSpec(input_dim=self.input_size, num_classes=c)
        self._carry = (learner.init(mp, task, k_init), Feedback.zeros(c))
        self._pending = None  # (x, logits, state) of the last prediction, until observed
        self._seen = [0, 0.0, 0.0]  # running count / sum / sum of squares of raw inputs

        def prepare(x, mean, std):
            return self._map((x.astype(jnp.float32) - mean) / std)

        def step(carry, x, mean, std):
            state, feedback = carry
            return learner.step(mp, state, prepare(x, mean, std), feedback)

        def scan(carry, xs, ys, mean, std):
            def body(carry, xy):
                return online_step(learner, mp, carry, xy[0], xy[1], c)

            return jax.lax.scan(body, carry, (prepare(xs, mean, std), ys))

        self._step, self._scan = jax.jit(step), jax.jit(scan)

    def _check(self, x: np.ndarray, batched: bool) -> np.ndarray:
        x = np.asarray(x)
        if batched and (x.ndim == 0 or x.shape[0] == 0):
            raise ValueError(
                f"run() needs a stream of at least one input, got an array of shape {x.shape}"
            )
        x = x.reshape(x.shape[0], -1) if batched else x.reshape(-1)
        if x.shape[-1] != self._d:
            raise ValueError(f"inputs have {x.shape[-1]} values; this session reads {self._d}")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"inputs must be real numbers, got dtype {x.dtype}")
        bad = ~np.isfinite(x)
        if bad.any():
            where = np.argwhere(bad)[0]
            step = f"step {where[0]} of this stream" if batched else "this input"
            raise ValueError(
                f"{step} has a non-finite value ({x[tuple(where)]} at feature {where[-1]}; "
                f"{int(bad.sum())} in all); nothing was read, the session's state is unchanged: "
                "drop or impute such inputs"
            )
        return x

    def _labels(self, ys, batched: bool = True) -> np.ndarray:
        ys = np.asarray(ys).reshape(-1)
        if ys.dtype == bool or not np.issubdtype(ys.dtype, np.number):
            raise ValueError(f"labels must be integers, got dtype {ys.dtype}")
        if not np.issubdtype(ys.dtype, np.integer):
            whole = np.isfinite(ys) & (ys == np.round(ys))
            if not whole.all():
                i = int(np.argmin(whole))
                at = f" (step {i})" if batched else ""
                raise ValueError(
                    f"label {ys[i]}{at} is not a whole number; labels are class indices "
                    f"0..{self.num_classes - 1}"
                )
        if ys.size and not (0 <= ys.min() and ys.max() < self.num_classes):
            raise ValueError(f"labels must lie in 0..{self.num_classes - 1}")
        return ys.astype(np.int32)

    def _stats(self, x: np.ndarray):
        if self.mean is not None and self.std is not None:
            return np.float32(self.mean), np.float32(self.std)
        n, s, ss = self._seen
        n, s, ss = n + x.size, s + float(x.sum()), ss + float(np.square(x, dtype=np.float64).sum())
        self._seen = [n, s, ss]
        mean = s / n
        return np.float32(mean), np.float32(max(math.sqrt(max(ss / n - mean * mean, 0.0)), 1e-6))

    def predict(self, x) -> np.ndarray:
        """Class probabilities ``[C]`` for one input."""
        x = self._check(x, batched=False)
        state, logits = self._step(self._carry, x, *self._stats(x))
        self._carry = (state, Feedback.zeros(self.num_classes))
        self._pending = (x, logits)
        return np.asarray(jax.nn.softmax(logits))

    def observe(self, x, y: int) -> None:
        """The label of ``x``; the learner reads the error on it at its next step."""
        x = self._check(x, batched=False)
        (y,) = self._labels([y], batched=False)
        if self._pending is None or not np.array_equal(self._pending[0], x):
            self.predict(x)
        logits = self._pending[1]
        onehot = jax.nn.one_hot(int(y), self.num_classes, dtype=logits.dtype)
        self._carry = (self._carry[0], Feedback(jax.nn.softmax(logits) - onehot, onehot))
        self._pending = None

    def run(self, xs, ys) -> StreamResult:
        """Predict-then-observe over a whole stream ``xs [T, ...]``, ``ys [T]``."""
        xs = self._check(xs, batched=True)
        ys = self._labels(ys)
        if ys.shape[0] != xs.shape[0]:
            raise ValueError(f"{xs.shape[0]} inputs but {ys.shape[0]} labels")
        self._carry, (logits, _, acc) = self._scan(self._carry, xs, ys, *self._stats(xs))
        self._pending = None
        logits = np.asarray(logits)
        probs = np.asarray(jax.nn.softmax(logits))
        return StreamResult(logits.argmax(-1), probs, np.asarray(acc))
