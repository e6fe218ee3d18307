"""A reader can tell contrastlab's public names apart: no two public classes share a name up to case
(``ClipLoss`` and ``CLIPLoss`` once were two different losses), and a hyperparameter's default is the same
everywhere it is offered."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings

import pytest

import contrastlab


def _public_classes() -> dict[str, list[str]]:
    """Lower-cased class name -> the modules whose ``__all__`` exports a class of that name (each class once,
    where it is defined)."""
    found: dict[str, set[str]] = {}
    for info in pkgutil.walk_packages(contrastlab.__path__, "contrastlab."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name, None)
            if inspect.isclass(value) and value.__module__ == module.__name__:
                found.setdefault(name.lower(), set()).add(f"{module.__name__}.{name}")
    return {key: sorted(where) for key, where in found.items()}


def test_no_two_public_classes_share_a_name_up_to_case():
    shared = {key: where for key, where in _public_classes().items() if len(where) > 1}
    assert not shared, shared


def test_the_finder_sees_the_losses():
    classes = _public_classes()
    assert classes["supconloss"] == ["contrastlab.losses.supcon.SupConLoss"]
    st_loss = "contrastlab.integrations.sentence_transformers.SentenceSupConLoss"
    assert classes["sentencesupconloss"] == [st_loss]


def test_the_sentence_transformers_losses_old_names_still_import_with_a_warning():
    from contrastlab.integrations import sentence_transformers as st  # the dev extra installs it

    with pytest.warns(DeprecationWarning, match="SentenceClipLoss"):
        assert st.CLIPLoss is st.SentenceClipLoss
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert st.SentenceSupConLoss  # the new names do not warn


def test_supcon_has_one_default_temperature_wherever_it_is_offered():
    from contrastlab.integrations.sentence_transformers import SentenceSupConLoss
    from contrastlab.losses import SupConLoss, supcon
    from contrastlab.losses.supcon import SUPCON_TEMPERATURE
    from contrastlab.train.config import validate

    defaults = {
        "supcon()": inspect.signature(supcon).parameters["temperature"].default,
        "SupConLoss": SupConLoss().temperature,
        "objective.supcon": validate({"objective": {"supcon": {"weight": 0.1}}}).objective.supcon.temperature,
        "SentenceSupConLoss": SentenceSupConLoss.default_temperature,
    }
    assert set(defaults.values()) == {SUPCON_TEMPERATURE}, defaults
