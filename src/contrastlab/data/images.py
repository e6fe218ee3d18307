"""Fashion-MNIST as an identity dataset, for verification (open-set) experiments.

No face dataset with identities ships offline; Debian's ``dataset-fashion-mnist`` package (70,000 28x28
images, 10 classes) does, in ``/usr/share/datasets/fashion-mnist``. Each class stands for an identity:
the model trains on the images of the known classes (Fashion-MNIST's own training file, less a validation
share), and is tested for verification on the held-out classes it never saw (Fashion-MNIST's test file),
which is what open-set face verification asks of an embedding. This is an analogue, not faces: ten
"identities" with thousands of images each are far easier to tell apart than people.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.data.catalog import FASHION_MNIST
from contrastlab.data.registry import ArrayDataset

__all__ = ["IdentityDataset", "fashion_mnist", "read_idx", "rotate_images"]

FASHION_DIR = Path(FASHION_MNIST)
CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "ankle boot"]  # fmt: skip


@dataclass
class IdentityDataset(ArrayDataset):
    """Features and identity labels; the known identities are 0..K-1, held-out ones K.. (test only).

    ``num_classes`` counts the known identities (the classifier's width); ``open_set`` names the splits
    holding identities the model never trains on (their metrics are verification only).
    """

    known: int = 0
    predefined_split: dict[str, Tensor] | None = None
    open_set: frozenset[str] = field(default_factory=frozenset)
    identity_names: list[str] = field(default_factory=list)
    #: (N, A) auxiliary regression targets (a pose), or None.
    auxiliary: Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.known


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip or plain) as a numpy array (the MNIST family's format).

    Raises:
        ValueError: not an IDX file of unsigned bytes.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {raw[:4]!r})")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {data.size} values")
    return data.reshape(shape)


def fashion_mnist(
    holdout_classes: list[int] | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    pose_degrees: float = 0.0,
) -> IdentityDataset:
    """Fashion-MNIST images (784 values in [0, 1]) with classes as identities.

    Args:
        holdout_classes: Classes left out of training and used as the open-set test identities (default
            [7, 8, 9]: sneaker, bag, ankle boot).
        train_per_class: Images per known class taken from the training file (default all 6,000).
        test_per_class: Images per held-out class taken from the test file (default all 1,000).
        val_fraction: Share of each known class's training images held out for validation.
        seed: Draws the per-class subsets, the validation share and the poses.
        pose_degrees: Rotate each image by an angle drawn uniformly from ±``pose_degrees`` (a "pose" the
            identity must not depend on); the angle / ``pose_degrees`` in [-1, 1] is the dataset's
            ``auxiliary`` target, for an auxiliary pose head (the identity study). 0: upright, no target.

    Raises:
        FileNotFoundError: the Debian package is not installed (with the apt line).
        ValueError: bad class numbers, or no class left to train on.
    """
    files = _fashion_files()
    if not 0.0 <= pose_degrees <= 180.0:
        raise ValueError(f"pose_degrees={pose_degrees}; expected 0..180")
    held = sorted(holdout_classes if holdout_classes is not None else [7, 8, 9])
    if any(c not in range(10) for c in held) or len(set(held)) != len(held) or len(held) > 8:
        raise ValueError(f"holdout_classes={held}; expected distinct classes 0..9 leaving at least 2 known")
    known = [c for c in range(10) if c not in held]
    rng = np.random.default_rng(seed)

    def pick(labels: np.ndarray, classes: list[int], per_class: int | None) -> np.ndarray:
        rows = []
        for c in classes:
            idx = np.flatnonzero(labels == c)
            if per_class is not None:
                if not 2 <= per_class <= idx.size:
                    raise ValueError(f"per-class count {per_class}; expected 2..{idx.size}")
                idx = np.sort(rng.choice(idx, per_class, replace=False))
            rows.append(idx)
        return np.concatenate(rows)

    train_x, train_y = read_idx(files["train-images"]), read_idx(files["train-labels"])
    test_x, test_y = read_idx(files["t10k-images"]), read_idx(files["t10k-labels"])
    a = pick(train_y, known, train_per_class)
    b = pick(test_y, held, test_per_class)
    relabel = {c: i for i, c in enumerate(known + held)}  # known identities first: 0..K-1
    x = np.concatenate([train_x[a], test_x[b]]).reshape(-1, 784).astype(np.float32) / 255.0
    y = np.array([relabel[int(c)] for c in np.concatenate([train_y[a], test_y[b]])], dtype=np.int64)
    n_known = a.size
    val = np.concatenate([
        rng.choice(np.flatnonzero(y[:n_known] == k), round(val_fraction * int((y[:n_known] == k).sum())),
                   replace=False)
        for k in range(len(known))
    ])  # fmt: skip
    train = np.setdiff1d(np.arange(n_known), val)
    split = {"train": torch.from_numpy(train), "val": torch.from_numpy(np.sort(val)),
             "test": torch.arange(n_known, y.size)}  # fmt: skip
    features, auxiliary = torch.from_numpy(x), None
    if pose_degrees > 0:
        pose = torch.from_numpy(rng.uniform(-1.0, 1.0, size=y.size).astype(np.float32))
        features = rotate_images(features.view(-1, 28, 28), pose * pose_degrees).reshape(-1, 784)
        auxiliary = pose[:, None]
    return IdentityDataset(
        "fashion_mnist", features, torch.from_numpy(y), "classification", known=len(known),
        predefined_split=split, open_set=frozenset({"test"}),
        identity_names=[CLASSES[c] for c in known + held], auxiliary=auxiliary, image_shape=(1, 28, 28),
    )  # fmt: skip


def _fashion_files() -> dict[str, Path]:
    """Fashion-MNIST's four idx files, from Debian's package (or ``CONTRASTLAB_FASHION_MNIST``).

    Raises:
        FileNotFoundError: one is missing (with the apt line).
    """
    folder = Path(os.environ.get("CONTRASTLAB_FASHION_MNIST", FASHION_DIR))
    files = {name: folder / f"{name}-idx{3 if 'images' in name else 1}-ubyte.gz"
             for name in ("train-images", "train-labels", "t10k-images", "t10k-labels")}  # fmt: skip
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found ({missing[0]}); install Debian's package: "
            "apt-get install dataset-fashion-mnist (or set CONTRASTLAB_FASHION_MNIST to a folder of the "
            "idx files)"
        )
    return files


def rotate_images(images: Tensor, degrees: Tensor) -> Tensor:
    """Each image rotated about its centre by its angle, clockwise as displayed (row 0 at the top; 90 is
    ``torch.rot90(k=-1)``), bilinear, with zeros coming in from outside.

    Shape:
        - images: (N, H, W); degrees: (N,); returns (N, H, W).
    """
    theta = torch.deg2rad(degrees.float())
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    # affine_grid maps output to input coordinates: the inverse rotation samples the rotated image.
    affine = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    grid = F.affine_grid(affine, [images.shape[0], 1, *images.shape[1:]], align_corners=False)
    return F.grid_sample(images[:, None], grid, align_corners=False)[:, 0]
