"""Sampling classification episodes from a ``DeviceDataset`` inside jitted code.

One episode is one task: pick a member dataset, draw ``T`` examples uniformly with
replacement from it, standardise them, and optionally augment the task with a random
pixel permutation, a random Gaussian projection to the learner's input size, a random
relabelling of the classes and a random subset of the classes (relabelled ``0..k-1``).
Everything is pure JAX; the ``EpisodeSpec`` is static.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from vsml_jax.data.device import DeviceDataset, to_device

__all__ = [
    "DeviceDataset",
    "Episode",
    "EpisodeSpec",
    "sample_episode",
    "sample_episode_full",
    "sample_episodes",
    "sample_episodes_at",
    "standardise",
    "to_device",
]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class EpisodeSpec:
    """How episodes are drawn; hashable, so it can be a static jit argument.

    Attributes:
        length: ``T``, examples per episode.
        input_dim: ``A``, the learner's input size; None means the dataset's ``D``.
        num_classes: ``C``, the learner's outputs; None means the dataset's. Labels must
            be ``< C``.
        projection_prob: probability that a task gets a fresh projection ``D -> A`` with
            ``N(0, 1/D)`` entries. Unprojected inputs are zero-padded from ``D`` to ``A``
            (in standardised space); ``D > A`` then is an error unless this is 1 or
            ``fixed_projection``.
        permute_pixels: per-task random permutation of the ``D`` inputs (before projecting).
        permute_labels: per-task random relabelling of the chosen member's classes.
        dataset_probs: mixture weights over the member datasets (normalised); None means
            uniform.
        class_subset_sizes: per task, draw ``k`` uniformly from these sizes, then ``k``
            random classes of the chosen member, sample examples only from them and
            relabel them ``0..k-1`` in random order (outputs stay ``C``: the learner does
            not know ``k``). None keeps every class.
        fixed_projection: unprojected tasks get one fixed projection ``D -> A`` (the same
            in every episode) instead of zero-padding: tasks whose input-label map can be
            memorised across episodes, as in a curriculum's first stage.
        early_steps, early_weight: the meta-training loss weights each of the first
            ``early_steps`` steps ``early_weight`` times as much as a later step (a
            learner rewarded for learning fast, not only for where it ends); see
            :attr:`loss_weights`.
        input_gain: ``(lo, hi)``: per task, the standardised inputs are multiplied by one
            gain drawn log-uniformly from ``[lo, hi]`` (before projecting): tasks whose
            inputs differ in scale, for a learner whose step size must not depend on
            it. None keeps the scale.
        class_gain: ``(lo, hi)``: per task, each class's standardised inputs are
            multiplied by its own gain drawn log-uniformly from ``[lo, hi]``: tasks whose
            classes differ in norm, where a prototype read by dot product alone favours the
            larger ones (the nearest class mean subtracts ``|mu_c|^2 / 2``). None keeps
            them.
    """

    length: int
    input_dim: int | None = None
    num_classes: int | None = None
    projection_prob: float = 0.0
    permute_pixels: bool = False
    permute_labels: bool = False
    dataset_probs: tuple[float, ...] | None = None
    class_subset_sizes: tuple[int, ...] | None = None
    fixed_projection: bool = False
    early_steps: int = 0
    early_weight: float = 1.0
    input_gain: tuple[float, float] | None = None
    class_gain: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.length) or self.length < 1:
            raise ValueError(f"length must be a positive int, got {self.length!r}")
        for field in ("input_dim", "num_classes"):
            value = getattr(self, field)
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(f"{field} must be None or a positive int, got {value!r}")
        if not 0.0 <= self.projection_prob <= 1.0:
            raise ValueError(f"projection_prob must be in [0, 1], got {self.projection_prob}")
        for field in ("permute_pixels", "permute_labels", "fixed_projection"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f"{field} must be a bool, got {getattr(self, field)!r}")
        if self.dataset_probs is not None:
            probs = tuple(float(p) for p in self.dataset_probs)
            if not probs or any(not math.isfinite(p) or p < 0 for p in probs) or sum(probs) <= 0:
                raise ValueError(
                    f"dataset_probs must be non-negative with a positive sum, got {probs}"
                )
            object.__setattr__(self, "dataset_probs", probs)
        if self.class_subset_sizes is not None:
            sizes = tuple(self.class_subset_sizes)
            if not sizes or any(not _is_int(k) or k < 1 for k in sizes):
                raise ValueError(
                    f"class_subset_sizes must be positive ints, got {self.class_subset_sizes!r}"
                )
            object.__setattr__(self, "class_subset_sizes", sizes)
        if not _is_int(self.early_steps) or self.early_steps < 0:
            raise ValueError(f"early_steps must be an int >= 0, got {self.early_steps!r}")
        if not math.isfinite(self.early_weight) or self.early_weight <= 0:
            raise ValueError(f"early_weight must be a finite number > 0, got {self.early_weight}")
        for field in ("input_gain", "class_gain"):
            value = getattr(self, field)
            if value is None:
                continue
            gain = tuple(float(g) for g in value)
            if (
                len(gain) != 2
                or not all(math.isfinite(g) and g > 0 for g in gain)
                or gain[0] > gain[1]
            ):
                raise ValueError(f"{field} must be (lo, hi) with 0 < lo <= hi, got {value!r}")
            object.__setattr__(self, field, gain)

    @property
    def loss_weights(self) -> tuple[float, ...] | None:
        """Per-step weights of the meta-training loss (None: the plain mean)."""
        early = min(self.early_steps, self.length)
        if early == 0 or self.early_weight == 1.0:
            return None
        return (float(self.early_weight),) * early + (1.0,) * (self.length - early)

    def dims(self, data: DeviceDataset) -> tuple[int, int]:
        """``(A, C)`` for ``data``, after checking that they fit it."""
        d = data.input_dim
        a = d if self.input_dim is None else self.input_dim
        c = data.num_classes if self.num_classes is None else self.num_classes
        if data.num_classes > c:
            raise ValueError(
                f"datasets {data.names} have {data.num_classes} classes but the learner "
                f"outputs num_classes={c}; filter the classes (preprocess.filter_classes)"
            )
        if d > a and self.projection_prob < 1.0 and not self.fixed_projection:
            raise ValueError(
                f"inputs of size D={d} cannot be zero-padded to input_dim={a}; "
                "use projection_prob=1 or a larger input_dim"
            )
        if self.dataset_probs is not None and len(self.dataset_probs) != data.num_datasets:
            raise ValueError(
                f"dataset_probs has {len(self.dataset_probs)} entries for "
                f"{data.num_datasets} datasets {data.names}"
            )
        if self.class_subset_sizes is not None and max(self.class_subset_sizes) > min(
            data.num_classes, c
        ):
            raise ValueError(
                f"class_subset_sizes {self.class_subset_sizes} ask for more classes than "
                f"datasets {data.names} have ({data.num_classes}) or the learner outputs ({c})"
            )
        return a, c


class Episode(NamedTuple):
    """One sampled episode, with where it came from."""

    xs: jax.Array  # float32 [T, A]
    labels: jax.Array  # int32 [T]
    dataset: jax.Array  # int32 [], the member index k
    indices: jax.Array  # int32 [T], rows of data.images
    projected: jax.Array  # bool [], whether the task was projected


def standardise(data: DeviceDataset, k: jax.Array, rows: jax.Array) -> jax.Array:
    """``(rows * scale[k] - mean[k]) / std[k]`` in float32, for rows of member ``k``."""
    return (rows.astype(jnp.float32) * data.scale[k] - data.mean[k]) / data.std[k]


def _pick_dataset(key: jax.Array, data: DeviceDataset, spec: EpisodeSpec) -> jax.Array:
    if data.num_datasets == 1:
        return jnp.zeros((), jnp.int32)
    probs = spec.dataset_probs or (1.0,) * data.num_datasets
    logits = jnp.log(jnp.asarray(probs, jnp.float32))
    return jax.random.categorical(key, logits).astype(jnp.int32)


def _permute_labels(key: jax.Array, labels: jax.Array, num_present: jax.Array, c: int):
    """Apply a random permutation of ``0..num_present-1`` to ``labels`` (all < c)."""
    order = jnp.arange(c)
    noise = jax.random.uniform(key, (c,))
    perm = jnp.argsort(jnp.where(order < num_present, noise, 2.0 + order))
    return perm[labels].astype(jnp.int32)


def _class_subset(key, data: DeviceDataset, k: jax.Array, sizes: tuple[int, ...], t: int):
    """``t`` rows of member ``k`` drawn uniformly from the examples of a random subset of
    its classes (size drawn from ``sizes``), and their labels relabelled ``0..size-1``.

    Rejection-free: the rows of the chosen classes are found by a cumulative sum over the
    label mask, O(N) per episode, and ``t`` uniform draws are looked up in it."""
    key_n, key_perm, key_idx = jax.random.split(key, 3)
    n = jnp.asarray(sizes, jnp.int32)[jax.random.randint(key_n, (), 0, len(sizes))]
    c = data.num_classes
    order = jnp.arange(c)
    noise = jax.random.uniform(key_perm, (c,))
    perm = jnp.argsort(jnp.where(order < data.member_classes[k], noise, 2.0 + order))
    rank = jnp.argsort(perm)  # class -> its new label; classes of rank < n are kept
    rows = jnp.arange(data.labels.shape[0])
    in_member = (rows >= data.offsets[k]) & (rows < data.offsets[k] + data.sizes[k])
    keep = in_member & (rank[data.labels] < n)
    cum = jnp.cumsum(keep.astype(jnp.int32))
    u = jax.random.randint(key_idx, (t,), 0, cum[-1], jnp.int32)
    idx = jnp.searchsorted(cum, u, side="right").astype(jnp.int32)
    return idx, rank[data.labels[idx]].astype(jnp.int32)


def _to_input_dim(key, x, spec: EpisodeSpec, a: int):
    """Project ``x`` [T, D] to [T, A] with probability p, else zero-pad it."""
    d = x.shape[-1]

    def project(key_w):
        w = jax.random.normal(key_w, (d, a), jnp.float32) / jnp.sqrt(jnp.float32(d))
        return jnp.dot(x, w, precision=jax.lax.Precision.HIGHEST)

    def plain():
        if getattr(spec, "fixed_projection", False):  # EpisodeSpec's (FewShotSpec: never)
            return project(jax.random.key(0))  # one projection shared by every episode
        return jnp.pad(x, ((0, 0), (0, a - d)))

    if spec.projection_prob == 0.0:
        return plain(), jnp.zeros((), bool)
    key_use, key_w = jax.random.split(key)
    projected = project(key_w)
    if spec.projection_prob == 1.0:
        return projected, jnp.ones((), bool)
    use = jax.random.bernoulli(key_use, spec.projection_prob)
    return jnp.where(use, projected, plain()), use


def sample_episode_full(key: jax.Array, data: DeviceDataset, spec: EpisodeSpec) -> Episode:
    """Sample one episode, returning its provenance too (see ``Episode``)."""
    chex.assert_rank([data.images, data.labels], [2, 1])
    a, c = spec.dims(data)
    t = spec.length
    key_k, key_idx, key_pix, key_proj, key_lab = jax.random.split(key, 5)
    k = _pick_dataset(key_k, data, spec)
    if spec.class_subset_sizes is None:
        idx = data.offsets[k] + jax.random.randint(key_idx, (t,), 0, data.sizes[k], jnp.int32)
        labels = data.labels[idx]
    else:
        idx, labels = _class_subset(key_idx, data, k, spec.class_subset_sizes, t)
    x = standardise(data, k, data.images[idx])
    if spec.input_gain is not None:  # its own key: episodes without a gain stay as they were
        lo, hi = (math.log(g) for g in spec.input_gain)
        x = x * jnp.exp(jax.random.uniform(jax.random.fold_in(key, 1), (), minval=lo, maxval=hi))
    if spec.class_gain is not None:  # likewise, one gain per class
        lo, hi = (math.log(g) for g in spec.class_gain)
        gains = jax.random.uniform(jax.random.fold_in(key, 2), (c,), minval=lo, maxval=hi)
        x = x * jnp.exp(gains)[labels][:, None]
    if spec.permute_pixels:
        x = x[:, jax.random.permutation(key_pix, x.shape[-1])]
    x, projected = _to_input_dim(key_proj, x, spec, a)
    if spec.permute_labels:
        labels = _permute_labels(key_lab, labels, data.member_classes[k], c)
    chex.assert_shape(x, (t, a))
    chex.assert_shape(labels, (t,))
    chex.assert_type([x, labels], [jnp.float32, jnp.int32])
    return Episode(xs=x, labels=labels, dataset=k, indices=idx, projected=projected)


def sample_episode(key: jax.Array, data: DeviceDataset, spec: EpisodeSpec):
    """One episode: ``(xs float32 [T, A], labels int32 [T])``. Jittable, spec static.

    A spec with its own ``sample(key, data)`` method (e.g.
    :class:`vsml_jax.data.fewshot.FewShotSpec`) draws its episodes itself.
    """
    if hasattr(spec, "sample"):
        return spec.sample(key, data)
    episode = sample_episode_full(key, data, spec)
    return episode.xs, episode.labels


def sample_episodes(key: jax.Array, data: DeviceDataset, spec: EpisodeSpec, num: int):
    """``num`` independent episodes: ``([num, T, A], [num, T])``, via ``vmap``."""
    keys = jax.random.split(key, num)
    return jax.vmap(lambda k: sample_episode(k, data, spec))(keys)


def sample_episodes_at(
    key: jax.Array,
    data: DeviceDataset,
    spec: EpisodeSpec,
    num: int,
    step: jax.Array,
    curriculum: tuple[tuple[int, EpisodeSpec], ...] = (),
):
    """``num`` episodes for meta-training step ``step`` under a task curriculum.

    ``curriculum`` is ``((until, stage_spec), ...)`` with increasing ``until``: steps
    before the first ``until`` draw the tasks of the first stage's spec (e.g. fewer
    classes via ``class_subset_sizes``, or a fixed projection via ``projection_prob=0``
    and ``fixed_projection``), then the next stage, and from the last ``until`` on the
    tasks of ``spec`` itself. Easier tasks early can help black-box learners leave the
    chance-level plateau (Kirsch et al. 2022, "General-purpose in-context learning by
    meta-learning transformers"); ending on ``spec`` keeps the final meta-loss that of
    the real task distribution. Empty: :func:`sample_episodes`."""
    if not curriculum:
        return sample_episodes(key, data, spec, num)
    ends = [int(u) for u, _ in curriculum]
    if any(b <= a for a, b in zip(ends, ends[1:])) or ends[0] < 1:
        raise ValueError(f"curriculum stage ends must increase from >= 1, got {ends}")
    specs = (*(s for _, s in curriculum), spec)
    branches = [lambda k, s=s: sample_episodes(k, data, s, num) for s in specs]
    stage = jnp.searchsorted(jnp.asarray(ends), step, side="right")
    return jax.lax.switch(stage, branches, key)
