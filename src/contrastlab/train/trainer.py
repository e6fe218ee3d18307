"""The training loop: read it top to bottom.

``train(config, run_dir)`` builds data, model, optimiser and objective from the config, then for each
epoch: batches from a sampler seeded by (seed, epoch), V views per batch, the objective, a guard against
non-finite values, backward (with a GradScaler under fp16), clipping, the step; then evaluation on train
and val, one history row, schedulers and early stopping, and an atomic checkpoint. A run killed at any
moment resumes from its last checkpoint with the same history as an uninterrupted run (on CPU; the
``seconds`` column aside).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from contrastlab import distributed, plugins
from contrastlab.data import ClassBalancedBatchSampler, RandomBatchSampler, batch_statistics, get_dataset
from contrastlab.models import ContrastiveModel, ModelOutput
from contrastlab.train.build import (
    TargetScale,
    augment_view,
    batch_inputs,
    check_task,
    forward_views,
    load_pretrained_encoder,
    make_augmentation,
    make_model,
    make_scheduler,
    make_split,
    own_model,
    param_groups,
    seed_everything,
    view_generator,
)
from contrastlab.train.checkpoint import (
    atomic_write,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    write_history,
    write_json,
    write_yaml,
)
from contrastlab.train.config import ConfigError, TrainConfig
from contrastlab.train.evaluate import evaluate, predict, predict_views
from contrastlab.train.objective import Objective, ObjectiveValue
from contrastlab.train.rundir import RunDir, RunDirError

__all__ = ["RunResult", "StepState", "TrainingDiverged", "train"]


class TrainingDiverged(RuntimeError):
    """Raised after ``max_consecutive_skips`` non-finite steps; ``report`` says what went wrong where."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report
        super().__init__(
            f"training stopped after {report['consecutive_skips']} consecutive non-finite steps "
            f"(epoch {report['epoch']}, step {report['step']}): non-finite {report['non_finite']}; "
            f"max |logit| {report['max_logit']:.3g} at temperature {report['temperature']}, "
            f"feature norms up to {report['max_feature_norm']:.3g}"
        )


@dataclass
class StepState:
    """What a step callback sees (used by tests to interrupt a run at a chosen step)."""

    epoch: int
    step: int
    global_step: int
    loss: float


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]
    stopped_early: bool
    test: dict[str, float] = field(default_factory=dict)
    #: The trained model (best weights) on the process that wrote the run; None elsewhere.
    model: ContrastiveModel | None = None


# --- the loop's helpers -------------------------------------------------------------------------------------


def _grad_norm(params: Sequence[Tensor]) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) if grads else 0.0


def _term_grad_norms(
    value: Any, weights: dict[str, float], encoder_params: Sequence[Tensor]
) -> dict[str, float]:
    """||∇ task|| and ||∇(λ_k · term_k)|| on the shared encoder, one autograd pass per part."""
    parts = {"task": value.task, **{k: weights[k] * t for k, t in value.terms.items() if weights[k] > 0}}
    norms = {}
    for name, part in parts.items():
        grads = torch.autograd.grad(part, encoder_params, retain_graph=True, allow_unused=True)
        flat = [g.norm() for g in grads if g is not None]
        norms[name] = float(torch.linalg.vector_norm(torch.stack(flat))) if flat else 0.0
    return norms


def overridden_weights(overrides: Sequence[str]) -> set[str]:
    """The terms whose weight an override sets (``objective.supcon.weight=0.1`` or ``objective.supcon=...``):
    on resume their configured weight replaces the adapted one; every other term keeps its adapted λ.

    Example:
        >>> sorted(overridden_weights(["trainer.epochs=9", "objective.supcon.weight=0.1", "objective.x={}"]))
        ['supcon', 'x']
    """
    names = set()
    for text in overrides:
        path = text.split("=", 1)[0].split(".")
        if path[0] == "objective" and (len(path) == 2 or (len(path) == 3 and path[2] == "weight")):
            names.add(path[1])
    return names


def _forward_batch(
    model: nn.Module,
    objective: Objective,
    data: Any,
    idx: Tensor,
    scale: TargetScale,
    augment: Any,
    config: TrainConfig,
    epoch: int,
    step: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> tuple[ObjectiveValue, list[ModelOutput], ModelOutput | None, ModelOutput | None]:
    """One micro-batch through the model: its views, the clean input, MoCo's keys and the reference model,
    then the objective. Returns (value, view outputs, keys, clean output)."""
    tc = config.trainer
    y = scale.encode(data.targets[idx]).to(device)
    aux = data.auxiliary[idx].to(device) if config.objective.auxiliary is not None else None
    on_clean = augment is not None and tc.views.task_on_clean and config.objective.task != "none"
    # With the task on clean inputs and every term's weight 0 (a verdict's baseline arm, or before a term
    # starts), the augmented views would only feed unweighted terms, yet their forward passes would still
    # move BatchNorm statistics: they are skipped, so the run is the plain task run.
    use_views = not on_clean or any(w > 0 for w in objective.weights(epoch).values())
    # Every view is drawn from the one collated clean batch, on the CPU (the generators live there).
    host = batch_inputs(data, idx, torch.device("cpu"))
    x_clean = host.to(device)
    x: Any = x_clean
    if augment is not None and use_views:
        x = [augment_view(augment, host, view_generator(tc.seed, epoch, step, v)).to(device)
             for v in range(tc.views.count)]  # fmt: skip
    one_stage = tc.views.mode == "one_stage"
    keys = clean = reference = None
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        outputs = forward_views(model, x, tc.views.count, one_stage) if use_views else []
        with torch.no_grad():
            if objective.key_model is not None and use_views:
                keys = objective.key_model(x[1] if isinstance(x, list) else x)
            if objective.reference_model is not None and use_views:
                reference = objective.reference_model(x[0] if isinstance(x, list) else x)
        if on_clean:
            clean = model(x_clean)
    return objective(outputs, y, epoch, keys, clean, reference, aux), outputs, keys, clean


def _better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


# --- the loop --------------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    raw_config: dict[str, Any] | None = None,
    resume: bool = False,
    override_note: list[str] | None = None,
    progress: bool | None = None,
    quiet: bool = False,
    on_step: Callable[[StepState], None] | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    overwrite: bool = False,
    model: nn.Module | None = None,
    dataset: Any = None,
) -> RunResult:
    """Trains ``config`` into ``run_dir`` (created), or resumes the run there.

    Args:
        config: The validated configuration.
        run_dir: Where config.yaml, history.csv, checkpoints/, metrics.json and embeddings/ go.
        raw_config: The mapping the config came from, recorded in config.yaml.
        resume: Continue from ``checkpoints/last.pt``; ``config`` may differ (e.g. a new λ) and the change
            is recorded in config.yaml's ``overrides`` history. A run killed before its first checkpoint
            starts over; files of interrupted atomic writes are removed.
        override_note: The overrides that produced ``config``, for the record.
        progress: Show a progress bar (default: when stderr is a terminal; otherwise one line per epoch).
        quiet: Neither bar nor epoch lines (a caller such as ``contrastlab verdict`` shows its own).
        on_step: Called after every optimiser step.
        on_epoch: Called with (epoch, history row) after each epoch is checkpointed; an exception it raises
            (e.g. a sweep pruning the trial) ends the run there, its files intact.
        overwrite: Start afresh where a run exists, removing it first (else that is an error).
        model: Your encoder instead of ``model.name`` (a copy is trained; see ContrastiveModel for the
            contract); the task and projection heads are added. Resume a run with the same encoder.
        dataset: Your dataset instead of ``data.name`` (see ``contrastlab.data.tables.as_dataset``).

    Raises:
        TrainingDiverged: ``max_consecutive_skips`` steps in a row had a non-finite loss or gradient.
        CheckpointError: resume from an unreadable checkpoint.
        RunDirError: another process is using ``run_dir``; a new run where one exists without
            ``overwrite``; resume where no run was ever started.
    """
    run = RunDir(run_dir)
    if dataset is not None:
        from contrastlab.data.tables import as_dataset

        dataset = as_dataset(dataset)
        name = f"python:{getattr(dataset, 'name', type(dataset).__name__)}"
        config = config.model_copy(update={"data": config.data.model_copy(update={"name": name})})
    if model is not None:  # config.yaml records that the model came from Python
        name = f"python:{type(model).__qualname__}"
        config = config.model_copy(update={"model": config.model.model_copy(update={"name": name})})
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 owns the directory
        return _train(config, run, raw_config, resume, override_note, progress, quiet, on_step, on_epoch,
                      model, dataset)
    with run.lock():
        if resume:
            run.remove_temporaries()
            if not run.last.is_file():
                if not run.config.is_file():
                    raise RunDirError(f"{run.path} holds no run to resume (no config.yaml, no checkpoint)")
                print(f"note: {run.path} has no checkpoint yet (stopped during its first epoch): "
                      "starting it over", file=sys.stderr)  # fmt: skip
                run.clear()
                resume = False
        elif run.holds_run():
            if not overwrite:
                raise RunDirError(
                    f"{run.path} already holds a run; resume it (contrastlab resume {run.path}), choose "
                    "another name, or overwrite it (--overwrite; the old run is deleted)"
                )
            run.clear()
        return _train(config, run, raw_config, resume, override_note, progress, quiet, on_step, on_epoch,
                      model, dataset)


def _train(
    config: TrainConfig,
    run: RunDir,
    raw_config: dict[str, Any] | None,
    resume: bool,
    override_note: list[str] | None,
    progress: bool | None,
    quiet: bool,
    on_step: Callable[[StepState], None] | None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None,
    encoder: nn.Module | None = None,
    dataset: Any = None,
) -> RunResult:
    run_dir = run.path
    tc = config.trainer
    device = torch.device(tc.device)
    rank, world = _init_distributed(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if tc.batch_size % world:
        raise ValueError(f"trainer.batch_size={tc.batch_size} must divide evenly over {world} processes")
    adaptive = [n for n, t in config.objective.terms().items() if t.auto_ratio is not None]
    if world > 1 and adaptive:
        raise ValueError(
            f"objective term(s) {adaptive} set auto_ratio, which adapts λ from per-term gradient norms "
            "measured on one process only; run on one process or fix their weights"
        )
    local_batch = tc.batch_size // world
    is_main = rank == 0
    seed_everything(tc.seed)

    # Data: the split depends only on the data config, so every arm of a comparison sees the same rows.
    data = dataset if dataset is not None else get_dataset(config.data.name, **config.data.options)
    check_task(config, data)
    split = make_split(config, data)
    train_idx = split["train"]
    scale = TargetScale.fit(config, data, train_idx)
    augment = make_augmentation(config, data)
    views = tc.views.count

    # Model: built right after seeding, so the same seed gives the same initial weights in every arm.
    model = make_model(config, data) if encoder is None else own_model(encoder, config, data, train_idx)
    if config.model.init_from:
        load_pretrained_encoder(model, config.model.init_from)
    if world > 1:
        # BatchNorm over the whole batch of every rank: the run normalises as one process would, and every
        # rank's running statistics (hence its evaluation) stay equal.
        model = distributed.convert_batchnorm(model)  # type: ignore[assignment]
    model = model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, tc), weight_decay=tc.weight_decay)
    if tc.sampler.name == "class_balanced":
        if data.task != "classification":
            raise ValueError("trainer.sampler.name=class_balanced needs a classification dataset")
        sampler: Any = ClassBalancedBatchSampler(
            data.targets[train_idx], tc.batch_size, tc.sampler.m_per_class, seed=tc.seed
        )
    else:
        sampler = RandomBatchSampler(train_idx.shape[0], tc.batch_size, seed=tc.seed)
    steps_per_epoch = max(1, math.ceil(len(sampler) / tc.accumulate))
    scheduler = make_scheduler(optimizer, tc, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=tc.amp == "fp16")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp)
    # Under torchrun each rank holds 1/W of every batch: the gradients are averaged over ranks once per
    # optimiser step and the contrastive terms gather negatives from every rank, which together give
    # exactly the single-process gradient (distributed.average_gradients says why not DDP's reducer).
    distributed.broadcast_module(model)
    objective = Objective(config.objective, gather_distributed=world > 1, model=model)
    request = objective.view_request()
    if request:
        if not hasattr(model.encoder, "request_views"):
            raise ValueError(
                "objective.supcon.layers, objective.token_supcon and objective.layer_supcon read layer and "
                f"token views of a text encoder (model.name=transformer), which model.name="
                f"{config.model.name!r} is not"
            )
        model.encoder.request_views(request)  # type: ignore[operator]
    encoder_params = [p for n, p in model.named_parameters() if n.startswith("encoder.") and p.requires_grad]
    trainable = [p for p in model.parameters() if p.requires_grad]

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    start_epoch, global_step, bad_epochs = 0, 0, 0
    overrides_log: list[dict[str, Any]] = []
    if resume:
        state = load_checkpoint(run.last)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        objective.load_state_dict(state["objective"], configured=overridden_weights(override_note or []))
        history, best = state["history"], state["best"]
        start_epoch, global_step, bad_epochs = state["epoch"] + 1, state["global_step"], state["bad_epochs"]
        overrides_log = state["overrides_log"]
        restore_rng(state["rng"])
        for group, lr in zip(optimizer.param_groups, state["lrs"], strict=True):
            group["lr"] = lr  # the scheduler's current LR, not the config's initial one
    if override_note or not resume:
        overrides_log.append({"epoch": start_epoch, "resume": resume, "overrides": override_note or []})
    if is_main:
        recorded = {"config": config.model_dump(mode="json"), "raw": raw_config or {},
                    "overrides": overrides_log, "plugins": plugins.loaded()}  # fmt: skip
        write_yaml(recorded, run.config)
        write_json({k: v.tolist() for k, v in split.items()}, run.split)

    show_bar = (sys.stderr.isatty() if progress is None else progress) and is_main and not quiet
    events = _event_writer(run.events) if is_main else None
    es = tc.early_stopping
    consecutive_skips = 0
    # A run that stopped early (its checkpoint says so) stays stopped on resume, unless a new patience lets
    # it go on: it finishes exactly as the uninterrupted run did.
    stopped_early = es.patience is not None and bad_epochs >= es.patience
    classifying = data.task == "classification"
    for epoch in range(start_epoch, tc.epochs if not stopped_early else start_epoch):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}  # over the micro-batches whose optimiser step was applied
        logged_keys: dict[str, None] = {}  # every logged name, in order, also of dropped steps
        counted, skipped, optimizer_steps, grad_norm_total = 0, 0, 0, 0.0
        grad_norm_sums: dict[str, float] = {}
        grad_norm_count = 0
        batches = list(sampler)
        # One optimiser step per window of `accumulate` micro-batches; the epoch's last window may be
        # shorter and still steps, so no gradient carries into the next epoch (nor is lost on resume).
        starts = range(0, len(batches), tc.accumulate)
        windows = [range(i, min(i + tc.accumulate, len(batches))) for i in starts]
        bar = _progress(windows, f"epoch {epoch + 1}/{tc.epochs}", show_bar)
        for window in bar:
            window_sums: dict[str, float] = {}
            failure: list[str] | None = None
            norms: dict[str, float] = {}
            # Per-term gradient norms (and auto-λ) once per optimiser step, on its first micro-batch; they
            # need extra autograd passes, which each rank would take on its own share: one process only.
            measure = (world == 1 and tc.term_grad_norm_every > 0 and bool(encoder_params)
                       and global_step % tc.term_grad_norm_every == 0)  # fmt: skip
            for step in window:
                idx = train_idx[torch.tensor(batches[step][rank * local_batch : (rank + 1) * local_batch])]
                value, outputs, keys, clean = _forward_batch(
                    model, objective, data, idx, scale, augment, config, epoch, step, device, amp_dtype
                )
                logged = {"loss": value.total, "task": value.task, **value.terms}
                logged_keys.update(dict.fromkeys(logged))

                # Guard: a non-finite loss never reaches the weights. The whole optimiser step is dropped
                # (with the window's gradients and logged values); K dropped steps in a row end the run with
                # a report. (Every rank takes the same decision, or the gradient exchange would hang.)
                if _on_any_rank(bool(value.non_finite), world):
                    failure = value.non_finite or ["(another rank)"]
                    break
                if measure and step == window[0]:
                    norms = _term_grad_norms(value, value.weights, encoder_params)
                scaler.scale(value.total / len(window)).backward()  # type: ignore[no-untyped-call]
                objective.enqueue(keys)  # MoCo: every micro-batch's keys, after its loss
                stats = batch_statistics(data.targets[idx], idx, views) if classifying else {}
                for k, v in {**{name: float(t.detach()) for name, t in logged.items()}, **stats}.items():
                    window_sums[k] = window_sums.get(k, 0.0) + v

            if failure is None:
                distributed.average_gradients(trainable)
                scaler.unscale_(optimizer)  # a no-op without fp16; under fp16 it records the overflow
                if not all(bool(torch.isfinite(p.grad).all()) for p in trainable if p.grad is not None):
                    failure = ["gradient"]
                    if scaler.is_enabled():
                        scaler.update()  # lowers the scale, as GradScaler's own skipped step would
            if failure is not None:
                skipped += 1
                seen = outputs or ([clean] if clean is not None else [])
                report = partial(_divergence_report, failure, seen, config, epoch, window[-1])
                consecutive_skips = _skip_step(optimizer, consecutive_skips, tc.max_consecutive_skips, report)
                continue
            grad_norm = (
                float(torch.nn.utils.clip_grad_norm_(trainable, tc.grad_clip))
                if tc.grad_clip
                else _grad_norm(trainable)
            )
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            objective.after_step(model)
            if scheduler is not None and tc.scheduler.name == "warmup_cosine":
                scheduler.step()
            consecutive_skips = 0
            global_step += 1
            optimizer_steps += 1
            grad_norm_total += grad_norm
            counted += len(window)
            for k, v in window_sums.items():
                sums[k] = sums.get(k, 0.0) + v
            if norms:
                for k, v in norms.items():
                    grad_norm_sums[k] = grad_norm_sums.get(k, 0.0) + v
                grad_norm_count += 1
                if norms.get("task", 0.0) > 0:
                    objective.adapt({k: v / norms["task"] for k, v in norms.items() if k != "task"})
            if show_bar:
                bar.set_postfix(
                    {k: f"{v / counted:.3g}" for k, v in sums.items() if k in ("task", *value.terms)}
                )
            if on_step is not None:
                on_step(StepState(epoch, window[-1], global_step, float(value.total.detach())))

        # --- end of epoch: evaluate, log, schedule, stop, checkpoint ---
        sums = _mean_over_ranks(sums, world)
        row: dict[str, Any] = {"epoch": epoch + 1}
        # Means over the micro-batches that were applied (NaN when every step of the epoch was dropped).
        row.update({f"train/{k}": sums.get(k, 0.0) / counted if counted else math.nan
                    for k in [*logged_keys, *(k for k in sums if k not in logged_keys)]})  # fmt: skip
        row["train/grad_norm"] = grad_norm_total / max(optimizer_steps, 1)
        row.update({f"weight/{k}": w for k, w in objective.weights(epoch).items()})
        row.update({f"grad_norm/{k}": v / grad_norm_count for k, v in grad_norm_sums.items()})
        clean_train = evaluate(model, data, train_idx, config, scale, device, part="train")
        val = evaluate(model, data, split["val"], config, scale, device, part="val")
        row.update({f"train_eval/{k}": v for k, v in clean_train.items()})
        row.update({f"val/{k}": v for k, v in val.items()})
        for k in (k for k in val if k in clean_train):
            row[f"gap/{k}"] = clean_train[k] - val[k]
            row[f"gap_ratio/{k}"] = clean_train[k] / val[k] if val[k] else float("nan")
        row["lr"] = optimizer.param_groups[-1]["lr"]
        row["skipped_steps"] = skipped
        row["seconds"] = time.perf_counter() - started
        row = distributed.broadcast_object(row)  # every rank decides (LR, best, stop) on rank 0's numbers
        history.append(row)

        monitored = row.get(es.monitor)
        if monitored is None:
            raise ConfigError(
                f"trainer.early_stopping.monitor={es.monitor!r} is not logged; choose one of {sorted(row)}"
            )
        if scheduler is not None and tc.scheduler.name == "plateau":
            plateau_metric = row.get(tc.scheduler.monitor)
            if plateau_metric is None:
                raise ConfigError(
                    f"trainer.scheduler.monitor={tc.scheduler.monitor!r} is not logged; "
                    f"choose one of {sorted(row)}"
                )
            scheduler.step(plateau_metric)
        if _better(monitored, best.get("value"), es.resolved_mode):
            best = {"epoch": epoch + 1, "metric": es.monitor, "value": monitored}
            bad_epochs = 0
            if is_main:
                best_weights = {"model": model.state_dict(), "epoch": epoch}
                save_checkpoint(
                    {**best_weights, "config": config.model_dump(mode="json")}, run.best
                )
        else:
            bad_epochs += 1
        stopped_early = es.patience is not None and bad_epochs >= es.patience

        if is_main:  # only rank 0 writes
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else {},
                    "scaler": scaler.state_dict(),
                    "objective": objective.state_dict(),
                    "lrs": [g["lr"] for g in optimizer.param_groups],
                    "epoch": epoch,
                    "global_step": global_step,
                    "bad_epochs": bad_epochs,
                    "stopped_early": stopped_early,
                    "history": history,
                    "best": best,
                    "overrides_log": overrides_log,
                    "rng": capture_rng(),
                    "config": config.model_dump(mode="json"),
                },
                run.last,
            )
            write_history(history, run.history)
            if events is not None:
                for key, value in row.items():
                    if key != "epoch" and isinstance(value, float | int) and math.isfinite(value):
                        events.add_scalar(key, value, epoch + 1)
                events.flush()
            if not show_bar and not quiet:
                print(_epoch_line(row, tc.epochs), file=sys.stderr, flush=True)
        if on_epoch is not None:
            on_epoch(epoch + 1, row)
        if stopped_early:
            break

    if events is not None:
        events.close()
    if world > 1:
        torch.distributed.barrier()  # rank 0's checkpoints are on disk before anyone reads them
    if not is_main:
        return RunResult(run_dir, history, best, stopped_early)
    return _finish(run, model, data, split, config, history, best, stopped_early, scale, device, augment)


def _finish(
    run: RunDir,
    model: ContrastiveModel,
    data: Any,
    split: dict[str, Tensor],
    config: TrainConfig,
    history: list[dict[str, Any]],
    best: dict[str, Any],
    stopped_early: bool,
    scale: TargetScale,
    device: torch.device,
    augment: Any,
) -> RunResult:
    """Reloads the best weights, evaluates on test, saves embeddings (and two views of each split, when the
    run has views: what alignment is measured on) and metrics.json."""
    best_state = load_checkpoint(run.best)
    model.load_state_dict(best_state["model"])
    test = evaluate(model, data, split["test"], config, scale, device, part="test")
    with torch.no_grad():
        for name in ("train", "val", "test"):
            idx = split[name]
            if idx.numel() == 0:
                continue
            out = predict(model, data, idx, device)
            arrays = {"embedding": out.embedding.float().numpy(),
                      "projection": out.projection.float().numpy(), "targets": data.targets[idx].numpy()}
            if augment is not None or config.trainer.views.count > 1:  # alignment needs two views
                a, b = predict_views(model, data, idx, device, augment, config.trainer.seed)
                arrays.update(view_a=a.numpy(), view_b=b.numpy())
            with atomic_write(run.embeddings / f"{name}.npz") as handle:
                np.savez(handle, **arrays)
    final = history[-1] if history else {}
    write_json(
        {
            "best": best,
            "final": final,
            "test": test,
            "stopped_early": stopped_early,
            "epochs_run": len(history),
            "target_scale": {"mean": scale.mean, "sd": scale.sd},
        },
        run.metrics,
    )
    return RunResult(run.path, history, best, stopped_early, test, model)


def _event_writer(path: Path) -> Any:
    """A TensorBoard writer, or None (with one line saying why) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        note = "note: tensorboard is not installed; no events written (pip install tensorboard)"
        print(note, file=sys.stderr)
        return None
    return SummaryWriter(log_dir=str(path))


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """Joins the process group torchrun describes (WORLD_SIZE > 1); returns (rank, world size)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return distributed.rank(), distributed.world_size()


def _on_any_rank(flag: bool, world: int) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([float(flag)])
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def _mean_over_ranks(sums: dict[str, float], world: int) -> dict[str, float]:
    """Each rank summed its own local batches; the logged epoch means are over all ranks' batches."""
    if world == 1 or not sums:
        return sums
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist(), strict=True)}


def _skip_step(
    optimizer: torch.optim.Optimizer, consecutive: int, limit: int, report: Callable[[], dict[str, Any]]
) -> int:
    """Drops the step's gradients; returns the new run of consecutive skips, or stops the run at ``limit``."""
    optimizer.zero_grad(set_to_none=True)
    consecutive += 1
    if consecutive >= limit:
        raise TrainingDiverged({**report(), "consecutive_skips": consecutive})
    return consecutive


def _divergence_report(
    non_finite: list[str], outputs: list[ModelOutput], config: TrainConfig, epoch: int, step: int
) -> dict[str, Any]:
    proj = outputs[0].projection.detach().float()
    temps = [getattr(t, "temperature", None) for t in config.objective.terms().values()]
    temperature = min((t for t in temps if t is not None), default=None)
    sims = proj @ proj.T
    emb = outputs[0].embedding.detach().float()
    return {
        "epoch": epoch + 1,
        "step": step,
        "non_finite": non_finite,
        "temperature": temperature,
        "max_logit": float(sims.abs().max() / (temperature or 1.0)) if sims.numel() else float("nan"),
        "max_feature_norm": float(emb.norm(dim=-1).max()),
        "logits_finite": bool(torch.isfinite(outputs[0].logits).all()),
    }


def _progress(items: list[Any], desc: str, show: bool) -> Any:
    if not show:
        return _Quiet(items)
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False, dynamic_ncols=True)


class _Quiet(list):  # type: ignore[type-arg]
    def set_postfix(self, *_: Any, **__: Any) -> None:
        pass


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    shown_prefixes = ("train/loss", "train/task", "val/")
    keys = [k for k in row if k.startswith(shown_prefixes) or k in ("lr", "skipped_steps")]
    shown = ", ".join(f"{k}={row[k]:.4g}" for k in keys if isinstance(row[k], float | int))
    return f"epoch {row['epoch']}/{epochs}: {shown}"
