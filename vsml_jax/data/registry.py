"""Which datasets exist: logical names and the pinned TFDS datasets that can serve them.

Each logical name maps to candidate TFDS datasets (``name[/config]:version``), most
preferred first; the first one present on disk is used. The first candidate is the
canonical TFDS dataset that ``python -m vsml_jax.data prepare NAME`` builds; later ones
are stand-ins prepared offline (see ``../shared/datasets/README.md``).
"""

from __future__ import annotations

import dataclasses
from pathlib import PurePosixPath


@dataclasses.dataclass(frozen=True)
class TfdsCandidate:
    """One TFDS dataset that can serve a logical name.

    Attributes:
        tfds_name: ``'name[/config]:version'``, as passed to ``tfds.data_source``.
        split_aliases: ``(asked, tfds_split)`` pairs, e.g. ``('train', 'small1')``.
        transpose: swap H and W after decoding (EMNIST is stored transposed).
    """

    tfds_name: str
    split_aliases: tuple[tuple[str, str], ...] = ()
    transpose: bool = False

    @property
    def relative_dir(self) -> PurePosixPath:
        """Where TFDS keeps it below a data dir: ``name[/config]/version``."""
        name, version = self.tfds_name.split(":")
        return PurePosixPath(name) / version

    def tfds_split(self, split: str) -> str:
        """The TFDS split that serves ``split``."""
        return dict(self.split_aliases).get(split, split)

    def user_splits(self, tfds_splits: tuple[str, ...]) -> tuple[str, ...]:
        """Splits one may ask for, given the TFDS splits present."""
        aliases = tuple(a for a, s in self.split_aliases if s in tfds_splits)
        return aliases + tuple(s for s in tfds_splits if s not in aliases)


# omniglot_small holds Omniglot's two "small background" subsets: 'train' reads small1
# (2720 images, 136 characters) and 'test' reads small2 (3120 images, 156 characters).
# NB: the two subsets share 50 characters (drawn by different people); filter them out
# with ``preprocess.filter_classes`` when meta-test classes must be unseen.
_OMNIGLOT_SMALL_SPLITS = (("train", "small1"), ("test", "small2"))

TFDS_CANDIDATES: dict[str, tuple[TfdsCandidate, ...]] = {
    "mnist": (TfdsCandidate("mnist:3.0.1"),),
    "fashion_mnist": (TfdsCandidate("fashion_mnist:3.0.1"),),
    "kmnist": (TfdsCandidate("kmnist:3.0.1"), TfdsCandidate("kmnist_testonly:3.0.1")),
    # EMNIST Balanced: 47 classes, 112800 train / 18800 test, stored transposed by TFDS.
    "emnist": (TfdsCandidate("emnist/balanced:3.1.0", transpose=True),),
    "cifar10": (TfdsCandidate("cifar10:3.0.2"), TfdsCandidate("cifar10_jpeg75:1.0.0")),
    "omniglot": (
        TfdsCandidate("omniglot:3.0.0"),
        TfdsCandidate("omniglot_small:3.0.0", split_aliases=_OMNIGLOT_SMALL_SPLITS),
    ),
}

SYNTHETIC_NAMES: tuple[str, ...] = ("random", "sum")

LOGICAL_NAMES: tuple[str, ...] = tuple(TFDS_CANDIDATES) + SYNTHETIC_NAMES


def candidates(name: str) -> tuple[TfdsCandidate, ...]:
    """The TFDS candidates of a real dataset; ValueError for unknown names."""
    check_name(name)
    if name in SYNTHETIC_NAMES:
        raise ValueError(f"'{name}' is synthetic: it has no TFDS source")
    return TFDS_CANDIDATES[name]


def check_name(name: str) -> None:
    """Raise ValueError listing the known names if ``name`` is not one."""
    if name not in LOGICAL_NAMES:
        raise ValueError(f"Unknown dataset '{name}'; known: {', '.join(LOGICAL_NAMES)}")
