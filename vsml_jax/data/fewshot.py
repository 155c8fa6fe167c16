"""N-way K-shot episodes, presented online, sampled inside jitted code.

One episode draws ``N = ways`` classes of a ``DeviceDataset`` (e.g. Omniglot characters),
relabels them ``0..N-1`` in a random order, and shows ``N * K`` support examples (each
class exactly ``K = shots`` times, in a random order) followed by ``queries`` query
examples, each of a class drawn uniformly from the ``N``; no example appears twice. The
learner runs online as always: it predicts every example and is told its label right
after (the project's ``Feedback`` protocol), so a query is scored before its label is
shown. Few-shot accuracy is the accuracy on the query steps, the last ``queries`` columns
of an episode (:func:`query_accuracy`). With ``queries=1`` this is the paper's Omniglot
protocol (``test_last``).

``FewShotSpec`` has the fields of ``EpisodeSpec`` that the trainers and the evaluation read
(``length``, ``num_classes``, ``input_dim``) and a ``sample(key, data)`` method, which
:func:`vsml_jax.data.episodes.sample_episode` calls: every ES generation, meta-gradient
batch and meta-test draws few-shot episodes when given this spec.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from vsml_jax.data.device import DeviceDataset
from vsml_jax.data.episodes import _to_input_dim, standardise


@dataclasses.dataclass(frozen=True)
class FewShotSpec:
    """How few-shot episodes are drawn; hashable, so it can be a static jit argument.

    Attributes:
        ways: ``N``, classes per episode (the learner's outputs).
        shots: ``K``, support examples per class.
        queries: query examples after the support set.
        input_dim: ``A`` for a fresh random projection ``D -> A`` per episode (with
            ``projection_prob``); None keeps the ``D`` pixels.
        projection_prob: probability of that projection, as in ``EpisodeSpec``.
        fitness_steps: the meta-training loss averages the online loss over ``'all'``
            steps (the project's default) or over the ``'queries'`` only (the paper's
            Omniglot ``loss_type: last``); see :attr:`loss_weights`.
    """

    ways: int = 5
    shots: int = 1
    queries: int = 1
    input_dim: int | None = None
    projection_prob: float = 0.0
    fitness_steps: str = "all"

    def __post_init__(self):
        for field, low in (("ways", 2), ("shots", 1), ("queries", 1)):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"few-shot {field} must be an int >= {low}, got {value!r}")
        if self.input_dim is not None and self.input_dim < 1:
            raise ValueError(f"input_dim must be None or >= 1, got {self.input_dim}")
        if not 0.0 <= self.projection_prob <= 1.0:
            raise ValueError(f"projection_prob must be in [0, 1], got {self.projection_prob}")
        if self.fitness_steps not in ("all", "queries"):
            raise ValueError(
                f"fitness_steps must be 'all' or 'queries', got {self.fitness_steps!r}"
            )

    @property
    def loss_weights(self) -> tuple[float, ...] | None:
        """Per-step weights of the meta-training loss (None: the plain mean)."""
        if self.fitness_steps == "all":
            return None
        return (0.0,) * (self.ways * self.shots) + (1.0,) * self.queries

    @property
    def length(self) -> int:
        """``T = N * K + queries``."""
        return self.ways * self.shots + self.queries

    @property
    def num_classes(self) -> int:
        return self.ways

    def dims(self, data: DeviceDataset) -> tuple[int, int]:
        """``(A, N)`` for ``data``, after checking that episodes can be drawn from it."""
        if data.num_datasets != 1:
            raise ValueError(f"few-shot episodes need one dataset, got {data.names}")
        if self.ways > data.num_classes:
            raise ValueError(
                f"{self.ways}-way episodes need at least {self.ways} classes; "
                f"{data.names[0]} has {data.num_classes}"
            )
        d = data.input_dim
        a = d if self.input_dim is None else self.input_dim
        if d > a and self.projection_prob < 1.0:
            raise ValueError(
                f"inputs of size D={d} cannot be zero-padded to input_dim={a}; "
                "use projection_prob=1 or input_dim=None"
            )
        return a, self.ways

    def check_counts(self, labels: np.ndarray) -> None:
        """Every class needs ``shots + queries`` examples (host-side check of labels)."""
        need = self.shots + self.queries
        counts = np.bincount(np.asarray(labels))
        counts = counts[counts > 0]
        if counts.size and counts.min() < need:
            raise ValueError(
                f"{self.shots}-shot episodes with {self.queries} queries need {need} examples "
                f"per class, but a class has only {counts.min()}; lower shots or queries"
            )

    def sample(self, key: jax.Array, data: DeviceDataset):
        """``(xs [T, A], labels [T])``: see :func:`sample_fewshot_full`."""
        episode = sample_fewshot_full(key, data, self)
        return episode.xs, episode.labels


class FewShotEpisode(NamedTuple):
    xs: jax.Array  # float32 [T, A]
    labels: jax.Array  # int32 [T], episode labels 0..N-1
    classes: jax.Array  # int32 [N], the dataset class behind episode label i
    indices: jax.Array  # int32 [T], rows of data.images


def sample_fewshot_full(key: jax.Array, data: DeviceDataset, spec: FewShotSpec) -> FewShotEpisode:
    """One N-way K-shot episode, with the dataset classes and rows it used. Jittable."""
    chex.assert_rank([data.images, data.labels], [2, 1])
    a, n = spec.dims(data)
    k, q = spec.shots, spec.queries
    key_cls, key_ex, key_order, key_q, key_proj = jax.random.split(key, 5)
    # the N classes, in random order: class classes[i] is episode label i
    classes = jax.random.permutation(key_cls, data.num_classes)[:n].astype(jnp.int32)
    # K + Q distinct examples of each, uniformly: the top of random scores on its rows
    noise = jax.random.uniform(key_ex, (n, data.labels.shape[0]))
    score = jnp.where(data.labels[None, :] == classes[:, None], noise, -1.0)
    rows = jax.lax.top_k(score, k + q)[1].astype(jnp.int32)  # [N, K + Q]
    support_labels = jnp.repeat(jnp.arange(n, dtype=jnp.int32), k)
    support_rows = rows[:, :k].reshape(-1)
    order = jax.random.permutation(key_order, n * k)
    query_labels = jax.random.randint(key_q, (q,), 0, n, jnp.int32)
    query_rows = rows[query_labels, k + jnp.arange(q)]
    labels = jnp.concatenate([support_labels[order], query_labels])
    indices = jnp.concatenate([support_rows[order], query_rows])
    x = standardise(data, jnp.zeros((), jnp.int32), data.images[indices])
    x, _ = _to_input_dim(key_proj, x, spec, a)
    chex.assert_shape(x, (spec.length, a))
    chex.assert_shape(labels, (spec.length,))
    return FewShotEpisode(xs=x, labels=labels, classes=classes, indices=indices)


def query_accuracy(accuracy: np.ndarray, spec: FewShotSpec) -> np.ndarray:
    """Per-episode accuracy on the query steps: ``[E, T]`` online accuracy -> ``[E]``."""
    accuracy = np.asarray(accuracy)
    if accuracy.ndim != 2 or accuracy.shape[1] != spec.length:
        raise ValueError(
            f"accuracy must be [episodes, {spec.length}] for {spec}, got {accuracy.shape}"
        )
    return accuracy[:, -spec.queries :].mean(axis=1)
