"""Image augmentations: the affine warp against exact rotations and pixel shifts, each augmentation's
randomness from its generator alone, its rates and bounds, config errors that name the place, and views of
Fashion-MNIST identities in a training run (SimCLR's NT-Xent on two augmented views)."""

from __future__ import annotations

import json

import pytest
import torch

from contrastlab.data.images import rotate_images
from contrastlab.views.image import (
    Affine,
    Erase,
    HorizontalFlip,
    ImageViews,
    Noise,
    affine_images,
    build_image_augmentation,
)
from tests.train.test_identity import fashion  # noqa: F401 (the fixture)


def _images(n: int = 4, size: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _warp(images, degrees=0.0, scale=1.0, shift=(0.0, 0.0)):
    n = images.shape[0]
    degrees_, scale_ = torch.full((n,), degrees), torch.full((n,), scale)
    return affine_images(images, degrees_, scale_, torch.tensor([shift] * n))


def test_affine_rotation_equals_exact_quarter_turns_and_rotate_images():
    x = _images(size=10)
    torch.testing.assert_close(_warp(x), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(_warp(x, 90.0)[:, 0], torch.rot90(x[:, 0], -1, dims=(1, 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(_warp(x, -90.0)[:, 0], torch.rot90(x[:, 0], 1, dims=(1, 2)), atol=1e-5, rtol=0)
    angles = torch.tensor([33.0, -20.0, 5.0, 170.0])
    turned = affine_images(x, angles, torch.ones(4), torch.zeros(4, 2))
    torch.testing.assert_close(turned[:, 0], rotate_images(x[:, 0], angles), atol=1e-5, rtol=0)


def test_affine_shift_moves_content_by_whole_pixels_right_and_down():
    x = _images(size=10)
    right = _warp(x, shift=(2 / 10, 0.0))  # two pixels to the right, zeros coming in on the left
    torch.testing.assert_close(right[..., 2:], x[..., :-2], atol=1e-5, rtol=0)
    assert float(right[..., :2].abs().max()) < 1e-6
    down = _warp(x, shift=(0.0, 1 / 10))
    torch.testing.assert_close(down[..., 1:, :], x[..., :-1, :], atol=1e-5, rtol=0)


def test_affine_scale_enlarges_about_the_centre():
    # A horizontal ramp x (pixel centres in grid units): enlarged twice, it rises half as fast.
    size = 16
    ramp = ((torch.arange(size) + 0.5) / size * 2 - 1).repeat(size, 1).view(1, 1, size, size)
    big = _warp(ramp, scale=2.0)
    torch.testing.assert_close(big, ramp / 2, atol=1e-5, rtol=0)


@pytest.mark.parametrize("aug", [Affine(), Erase(p=0.7), HorizontalFlip(), Noise(0.1)], ids=type)
def test_each_augmentation_is_a_function_of_its_generator_and_leaves_its_input(aug):
    x = _images(8)
    before = x.clone()
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, before)


def test_flip_and_erase_rates_and_bounds():
    x = _images(400, size=10)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(HorizontalFlip(0.0)(x, g), x) and torch.equal(Erase(0.0)(x, g), x)
    assert torch.equal(HorizontalFlip(1.0)(x, g), x.flip(-1))
    flipped = (HorizontalFlip(0.5)(x, g) != x).flatten(1).any(1).float().mean()
    assert 0.4 < float(flipped) < 0.6
    ones = torch.ones(2000, 1, 20, 20)
    erased = (Erase(p=1.0, area=(0.05, 0.2), ratio=(0.5, 2.0))(ones, g) == 0).flatten(1).sum(1).float() / 400
    # Every image loses one rectangle; its area is the drawn share up to rounding each side to pixels.
    assert float(erased.min()) > 0.02 and float(erased.max()) < 0.3
    assert 0.1 < float(erased.mean()) < 0.15  # the mean of U(0.05, 0.2) is 0.125
    rows, cols = torch.nonzero(Erase(p=1.0)(ones[:1], g)[0, 0] == 0, as_tuple=True)
    assert int((rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)) == rows.numel()  # one rectangle


def test_noise_has_the_requested_spread():
    x = torch.zeros(1, 1, 200, 200)
    noisy = Noise(0.2)(x, torch.Generator().manual_seed(0))
    assert float(noisy.std()) == pytest.approx(0.2, rel=0.02) and abs(float(noisy.mean())) < 0.005


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "blur"}, r"augment\.name='blur'; expected one of \['affine', 'erase', 'hflip', 'noise'\]"),
        ([{"name": "affine"}, {"name": "erase", "q": 1}],
         r"augment\[1\]: erase does not take options \['q'\]"),
        ({"name": "affine", "degrees": 200}, r"augment \(affine\): degrees=200; expected 0..180"),
        ({"name": "erase", "p": 1.5}, r"augment \(erase\): p=1.5; expected a probability"),
        ({"name": "affine", "scale": [1.2, 0.8]}, r"scale=\[1.2, 0.8\]; expected \[low, high\]"),
        ([], r"augment: an empty list"),
        ("affine", r"augment: expected a mapping"),
    ],
)
def test_config_errors_name_the_place_and_the_value(spec, message):
    with pytest.raises(ValueError, match=message):
        build_image_augmentation(spec)


def test_image_views_work_on_flat_rows_and_check_their_width():
    views = ImageViews(build_image_augmentation([{"name": "hflip", "p": 1.0}]), (1, 3, 4))
    rows = torch.arange(24.0).view(2, 12)
    flipped = views(rows, torch.Generator().manual_seed(0))
    torch.testing.assert_close(flipped, rows.view(2, 1, 3, 4).flip(-1).reshape(2, 12))
    with pytest.raises(ValueError, match=r"image rows of shape \(2, 10\); expected \(N, 12\)"):
        views(torch.zeros(2, 10), torch.Generator())


def test_simclr_on_fashion_mnist_identities_trains_on_augmented_views(fashion, tmp_path, monkeypatch):  # noqa: F811
    from contrastlab.cli import main as cli_main
    from contrastlab.train.checkpoint import read_history
    from tests.train.test_identity import RECIPES

    drawn: list[torch.Tensor] = []
    original = ImageViews.__call__

    def spy(self, rows, generator):
        out = original(self, rows, generator)
        drawn.append(out)
        return out

    monkeypatch.setattr(ImageViews, "__call__", spy)
    augment = "[{name: affine, degrees: 15, translate: 0.1}, {name: erase, p: 0.5}]"
    args = ["train", str(RECIPES / "identity_ce.yaml"), "data.options.train_per_class=40",
            "data.options.test_per_class=20", "trainer.epochs=2", "trainer.batch_size=64",
            "objective.task=none", "trainer.views.count=2", f"trainer.views.augment={augment}",
            "objective.nt_xent.weight=1.0", "--runs-dir", str(tmp_path)]  # fmt: skip
    assert cli_main(args) == 0
    history = read_history(tmp_path / "identity_ce" / "history.csv")
    assert all(row["train/nt_xent"] > 0 for row in history)
    steps = 2 * -(-(7 * 36) // 64)  # 36 training images per known class after the validation share
    assert len(drawn) >= 2 * steps  # two views a step (and two for the alignment diagnostics)
    assert not torch.equal(drawn[0], drawn[1])  # the two views of a batch differ
    test = json.loads((tmp_path / "identity_ce" / "metrics.json").read_text())["test"]
    assert {"tar@far=0.001", "eer"} <= set(test)


def test_a_users_own_image_rows_get_image_views(tmp_path, monkeypatch):
    from contrastlab.data import catalog
    from contrastlab.data.registry import ArrayDataset
    from contrastlab.train import train, validate_config
    from contrastlab.train.checkpoint import read_history
    from tests.models.test_conv import half_bright_images

    monkeypatch.setattr(catalog, "_REGISTRY", dict(catalog._REGISTRY))  # the registration stays in this test
    catalog.register_dataset("shapes", half_bright_images)
    calls = []
    original = ImageViews.__call__

    def spy(self, rows, g):
        calls.append(self.shape)
        return original(self, rows, g)

    monkeypatch.setattr(ImageViews, "__call__", spy)
    config = validate_config({
        "data": {"name": "shapes"}, "model": {"hidden_dims": [32]},
        "objective": {"task": "cross_entropy", "supcon": {"weight": 0.5}},
        "trainer": {"epochs": 2, "batch_size": 32,
                    "views": {"count": 2, "augment": [{"name": "noise", "std": 0.1}]}},
    })  # fmt: skip
    train(config, tmp_path / "run", progress=False)
    assert calls and set(calls) == {(1, 8, 8)}
    assert all(row["train/supcon"] > 0 for row in read_history(tmp_path / "run" / "history.csv"))
    with pytest.raises(ValueError, match=r"dataset 'bad': image_shape=\[1, 8, 7\] does not fit feature rows "
                                         r"of shape \(4, 64\)"):  # fmt: skip
        ArrayDataset("bad", torch.zeros(4, 64), torch.zeros(4), "regression", image_shape=(1, 8, 7))
