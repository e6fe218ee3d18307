"""One registry of metric directions, used by early stopping, schedulers, the verdict and diagnose."""

from __future__ import annotations

import pytest

from contrastlab.metrics import direction, mode_for, register_metric
from contrastlab.train import ConfigError, validate_config
from contrastlab.train.diagnose import generalization_gap


@pytest.mark.parametrize(
    ("name", "expected"),
    [("val/eer", False), ("test.impostor_cosine", False), ("train_eval/auxiliary_mae", False),
     ("val/tar@far=0.001", True), ("best_val.val/accuracy", True), ("diagnostics.probes.ridge.mae", False),
     ("diagnostics.geometry.uniformity", None), ("val/never_heard_of_it", None), ("gap/accuracy", None)],
)  # fmt: skip
def test_direction__known_metrics_under_any_prefix_and_none_for_unknown(name, expected):
    assert direction(name) is expected


def test_early_stopping_and_plateau_mode__follow_the_monitored_metric():
    # Seen failing before the fix: mode defaulted to "min" whatever the metric (val/accuracy minimised).
    trainer = {"early_stopping": {"monitor": "val/accuracy"},
               "scheduler": {"name": "plateau", "monitor": "val/eer"}}  # fmt: skip
    config = validate_config({"trainer": trainer})
    assert config.trainer.early_stopping.mode == "max" and config.trainer.scheduler.mode == "min"
    explicit = validate_config({"trainer": {"early_stopping": {"monitor": "val/accuracy", "mode": "min"}}})
    assert explicit.trainer.early_stopping.mode == "min"
    with pytest.raises(ConfigError, match=r"monitor='val/spearman' has no known direction"):
        validate_config({"trainer": {"early_stopping": {"monitor": "val/spearman"}}})


def test_register_metric__declares_a_users_metric():
    register_metric("val/spearman_for_test", higher_is_better=True)
    assert mode_for("test.spearman_for_test") == "max"


def test_generalization_gap__best_epoch_by_direction():
    # Seen failing before the fix: the epoch of the *highest* EER was reported as the best.
    eers = [0.4, 0.2, 0.3]
    history = [{"epoch": e + 1, "val/eer": v, "train_eval/eer": v - 0.1} for e, v in enumerate(eers)]
    assert generalization_gap(history)["eer"]["at_best_val"]["epoch"] == 2
    unknown = [{"epoch": 1, "val/zzz": 1.0, "train_eval/zzz": 2.0}]
    assert "at_best_val" not in generalization_gap(unknown)["zzz"]
