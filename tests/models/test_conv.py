"""The convolutional encoder for image rows: shapes, every parameter in exactly one layer, the image shape
taken from the dataset, clear errors, and a run that learns two image classes with image views."""

from __future__ import annotations

import pytest
import torch

from contrastlab.data.registry import ArrayDataset
from contrastlab.models.conv import ConvEncoder


def half_bright_images(n: int = 128) -> ArrayDataset:
    """Two classes of 8x8 images (rows of 64, image_shape (1, 8, 8)): a bright left or right half."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    images = torch.rand(n, 1, 8, 8, generator=g) * 0.3
    images[y == 0, :, :, :4] += 0.7
    images[y == 1, :, :, 4:] += 0.7
    return ArrayDataset("shapes", images.reshape(n, 64), y, "classification", image_shape=(1, 8, 8))


@pytest.mark.parametrize(("shape", "widths"), [((1, 28, 28), [8, 16, 32]), ((3, 5, 7), [4, 4, 4, 4])])
def test_output_shape_and_every_parameter_in_exactly_one_layer(shape, widths):
    encoder = ConvEncoder(num_features=shape[0] * shape[1] * shape[2], embedding_dim=12, hidden_dims=widths,
                          image_shape=shape)  # fmt: skip
    x = torch.randn(3, shape[0] * shape[1] * shape[2])
    assert encoder(x).shape == (3, 12)
    in_layers = [id(p) for layer in encoder.layers for p in layer.parameters()]
    assert sorted(in_layers) == sorted(id(p) for p in encoder.parameters())
    assert len(set(in_layers)) == len(in_layers)


def test_rows_are_read_as_images_shifting_the_content_leaves_the_pooled_features():
    # Two 3x3 convolutions see 2 pixels around each one; content kept 2+ pixels from the borders and moved
    # by 2 (the max-pool's stride) moves the pooled feature map by one cell, so the average is the same. A
    # model reading the row as a flat vector would give another output.
    encoder = ConvEncoder(num_features=256, embedding_dim=6, hidden_dims=[4], image_shape=(1, 16, 16)).eval()
    patch = torch.rand(4, 4, generator=torch.Generator().manual_seed(0)) + 0.5
    here, there = torch.zeros(1, 16, 16), torch.zeros(1, 16, 16)
    here[0, 4:8, 4:8] = patch
    there[0, 4:8, 6:10] = patch
    with torch.no_grad():
        a, b = encoder(here.reshape(1, 256)), encoder(there.reshape(1, 256))
        other = encoder(torch.rand(1, 256, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a, other, atol=1e-3)


def test_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"image_shape=\[1, 8, 7\] does not fit rows of 64 values"):
        ConvEncoder(num_features=64, embedding_dim=4, hidden_dims=[4], image_shape=(1, 8, 7))
    with pytest.raises(ValueError, match=r"at least one stage's channels"):
        ConvEncoder(num_features=64, embedding_dim=4, hidden_dims=[], image_shape=(1, 8, 8))


def test_the_trainer_gives_convnet_the_datasets_image_shape_and_it_learns(tmp_path, monkeypatch):
    import json

    from contrastlab.data import catalog, get_dataset
    from contrastlab.train import train, validate_config
    from contrastlab.train.build import make_model

    monkeypatch.setattr(catalog, "_REGISTRY", dict(catalog._REGISTRY))
    catalog.register_dataset("shapes", half_bright_images)
    config = validate_config({
        "data": {"name": "shapes"}, "model": {"name": "convnet", "hidden_dims": [8, 16], "embedding_dim": 16},
        "objective": {"task": "cross_entropy", "supcon": {"weight": 0.2}},
        "trainer": {"epochs": 6, "batch_size": 32, "lr": 0.01,
                    "views": {"count": 2, "augment": [{"name": "affine", "degrees": 10}]}},
    })  # fmt: skip
    train(config, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["accuracy"] >= 0.9
    blobs = validate_config({"data": {"name": "blobs"}, "model": {"name": "convnet"}})
    with pytest.raises(ValueError, match=r"model.name='convnet' needs rows that are images; dataset 'blobs'"):
        make_model(blobs, get_dataset("blobs"))
