"""Run under torchrun by test_ddp: trains a recipe and saves every rank's final model state."""

import json
import sys
from pathlib import Path

import torch

from contrastlab import distributed
from contrastlab.train import train, validate_config


def main() -> None:
    raw, run_dir, out = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    models = []
    real = distributed.convert_batchnorm

    def keep(model):
        models.append(real(model))
        return models[-1]

    distributed.convert_batchnorm = keep  # the trainer calls it on the model it trains
    def save(epoch, row):  # each epoch's end, on every rank (rank 0 later reloads its best weights)
        # convert_batchnorm recurses through the patched name: the model itself is converted last
        torch.save(models[-1].state_dict(), out / f"rank{distributed.rank()}.pt")

    train(validate_config(raw), run_dir, raw_config=raw, progress=False, on_epoch=save)


if __name__ == "__main__":
    main()
