"""Two gloo processes on CPU compute the same loss and gradients as one process on the whole batch."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from contrastlab import distributed
from contrastlab.losses import clip_loss, focal_supcon, info_nce, nt_xent, supcon
from contrastlab.testing import assert_distributed_equivalence

G = torch.Generator().manual_seed(0)
Z = torch.randn(8, 2, 6, generator=G)
QUEUE = torch.randn(5, 6, generator=G)
LABELS = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])  # every anchor's positives live on the other rank too
ONLY_REMOTE = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])  # single view: each positive is on the other rank

CASES = {
    "nt_xent": (partial(nt_xent, temperature=0.3, gather_distributed=True), (Z[:, 0], Z[:, 1])),
    "nt_xent_tiled": (
        partial(nt_xent, temperature=0.3, chunk_size=3, gather_distributed=True),
        (Z[:, 0], Z[:, 1]),
    ),
    "info_nce": (partial(info_nce, temperature=0.2, gather_distributed=True), (Z[:, 0], Z[:, 1])),
    "info_nce_queue": (
        partial(info_nce, negatives=QUEUE, temperature=0.2, chunk_size=2, gather_distributed=True),
        (Z[:, 0], Z[:, 1]),
    ),
    "clip_loss": (partial(clip_loss, temperature=0.1, gather_distributed=True), (Z[:, 0], Z[:, 1])),
    "clip_loss_tiled": (
        partial(clip_loss, temperature=0.1, chunk_size=3, gather_distributed=True),
        (Z[:, 0], Z[:, 1]),
    ),
    "supcon_labels": (partial(supcon, temperature=0.1, gather_distributed=True), (Z, LABELS)),
    "supcon_remote_positives_tiled": (
        partial(supcon, temperature=0.1, chunk_size=3, gather_distributed=True),
        (Z[:, 0], ONLY_REMOTE),
    ),
    "supcon_unlabelled": (partial(supcon, temperature=0.5, gather_distributed=True), (Z,)),
    "supcon_one": (
        partial(supcon, temperature=0.1, contrast_mode="one", gather_distributed=True),
        (Z, LABELS),
    ),
    "focal_supcon": (partial(focal_supcon, temperature=0.2, gather_distributed=True), (Z, LABELS)),
    "focal_supcon_tiled": (
        partial(focal_supcon, temperature=0.2, chunk_size=3, gather_distributed=True),
        (Z, LABELS),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gather_distributed__two_processes_equal_one(name):
    loss_fn, inputs = CASES[name]
    assert_distributed_equivalence(loss_fn, *inputs)


def test_assert_distributed_equivalence__catches_a_global_loss_on_every_rank():
    # The classic mistake: gathering without the local-rows form (here: a loss that ignores the gather)
    # gives each rank only its own negatives. The helper must say so.
    local_only = partial(nt_xent, temperature=0.3, gather_distributed=False)
    with pytest.raises(AssertionError, match="differs"):
        assert_distributed_equivalence(local_only, Z[:, 0], Z[:, 1])


def test_assert_distributed_equivalence__rejects_uneven_shards():
    with pytest.raises(ValueError, match=r"inputs\[0\] has 7 rows, which world_size=2 does not divide"):
        assert_distributed_equivalence(nt_xent, Z[:7, 0], Z[:7, 1])


def test_distributed__safe_without_a_process_group():
    assert distributed.rank() == 0
    assert distributed.world_size() == 1
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.all_gather_with_grad(x) is x
    assert distributed.all_gather(x) is x
