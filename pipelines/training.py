"""What every training stage shares: the optimizer step, the schedule, resumable state, DDP setup."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup to `peak`, then a cosine down to zero at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def train_device() -> torch.device:
    """This process's device: its GPU under torchrun (LOCAL_RANK), the only GPU, or the CPU."""
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def distributed(model, device: torch.device, world: int):
    """What the training step runs: `model` itself, or under torchrun its DDP wrapper on `device`."""
    if world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch's tensors on `device` (non-blocking from pinned memory is not worth it here)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class StepBudget:
    """Fit a run's cosine schedule to a wall-clock budget (`time_budget_s`), e.g. a lent GPU's minutes.

    Timing starts after the first step (allocation, kernel choice). From `calibrate` steps on (inside
    the warmup, whose lr does not depend on the total) the total is re-estimated after every step from
    the mean step time so far, validation and checkpoints included, up or down (a version that only
    lowered it let slow first steps fix too short a run), never above `steps`: the run ends about when
    the budget does. Without a budget the total is `steps` throughout.
    """

    def __init__(self, steps: int, budget_s: float | None, warmup: int, calibrate: int = 30):
        self.steps, self.total, self.budget_s = steps, steps, budget_s
        self.calibrate = min(calibrate, max(1, warmup - 1))
        self.started: float | None = None
        self.first_step = 0

    def update(self, step: int, now: float) -> int:
        """Call after each step (`step` done so far); returns the total steps of the schedule."""
        if self.budget_s is None:
            return self.total
        if self.started is None:
            self.started, self.first_step = now, step
        elif step - self.first_step >= self.calibrate:
            per_step = (now - self.started) / (step - self.first_step)
            left = max(0.0, self.budget_s - (now - self.started))
            total = max(step, min(self.steps, step + int(left / per_step)))
            if torch.distributed.is_initialized():  # every rank must stop at the same step
                shared = torch.tensor([total], device=_collective_device())
                torch.distributed.all_reduce(shared, op=torch.distributed.ReduceOp.MIN)
                total = int(shared.item())
            self.total = total
        return self.total


def _collective_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def autocast(enabled: bool):
    """bf16 autocast on the device training runs on (CUDA when present, else the CPU), where that device
    runs bf16 natively (`runtime.native_bf16`); elsewhere bf16 is emulated, slower than fp32, so fp32."""
    from soundstorm.base.runtime import native_bf16

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and native_bf16(device))


def accumulated_step(model, optimizer, lr: float, micro_losses, ddp=None, clip: float = 1.0) -> float:
    """One optimizer step over several micro-batches: `micro_losses` are callables giving each loss.

    Gradients are averaged over them; under DDP (`ddp` the wrapper) they are all-reduced once, on
    the last micro-batch (`no_sync` before it). Returns the mean loss.
    """
    import contextlib

    for group in optimizer.param_groups:  # a group with `lr_scale` follows the schedule at that ratio
        group["lr"] = lr * group.get("lr_scale", 1.0)
    optimizer.zero_grad(set_to_none=True)
    total, n = 0.0, len(micro_losses)
    for i, compute in enumerate(micro_losses):
        sync = ddp is None or i == n - 1
        with contextlib.nullcontext() if sync else ddp.no_sync():
            loss = compute()
            (loss / n).backward()
        total += loss.item()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return total / n


def optimizer_step(model, optimizer, loss, lr: float, clip: float = 1.0) -> None:
    for group in optimizer.param_groups:  # a group with `lr_scale` follows the schedule at that ratio
        group["lr"] = lr * group.get("lr_scale", 1.0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()


def load_state(path: Path, model, optimizer) -> tuple[int, list]:
    """Resume (step, log) from `path` if it exists; read with weights_only=True (no pickle)."""
    if not path.exists():
        return 0, []
    state = torch.load(path, weights_only=True, map_location="cpu")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if "rng" in state:
        torch.set_rng_state(state["rng"])
    return int(state["step"]), json.loads(state["log"])


def save_state(path: Path, model, optimizer, step: int, log: list) -> None:
    """{model, optimizer, step, log, rng}, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "log": json.dumps(log),
            "rng": torch.get_rng_state(),
        },
        tmp,
    )
    os.replace(tmp, path)


def ddp_setup() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun (nccl on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank() if world > 1 else 0), world


@dataclass
class Stage:
    """One training stage as `train` runs it: the model, where it lives, its schedule and its pieces.

    `batches` yields collated training batches; `loss(batch)` is one micro-batch's loss (through the DDP
    wrapper where there is one, autocast inside); `validate()` returns figures for the log; `save()` writes
    the shipped form into `out`, which also holds `train_state.pt`.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    out: Path
    batches: Iterator[dict]
    loss: Callable[[dict], torch.Tensor]
    save: Callable[[], None]
    validate: Callable[[], dict] | None
    steps: int
    lr: float
    warmup: int
    device: torch.device
    accumulate: int = 1
    log_every: int = 25
    save_every: int = 250
    time_budget_s: float | None = None
    ddp: torch.nn.Module | None = None  # the DDP wrapper under torchrun
    rank: int = 0
    world: int = 1


SCHEDULE_KEYS = ("steps", "lr", "warmup", "accumulate", "log_every", "save_every", "time_budget_s")


def schedule(settings, **override) -> dict:
    """A stage config's schedule fields (those of `SCHEDULE_KEYS` it has), as `Stage` keywords."""
    return {k: getattr(settings, k) for k in SCHEDULE_KEYS if hasattr(settings, k)} | override


def placement(device: torch.device, ddp, rank: int, world: int) -> dict:
    """Where a stage runs, as `Stage` keywords: its device, and under torchrun its DDP wrapper and rank."""
    return {"device": device, "ddp": ddp if world > 1 else None, "rank": rank, "world": world}


def resume(out: Path, model, optimizer) -> tuple[int, list]:
    """(step, log) of an interrupted run in `out` (`train_state.pt`), or (0, [])."""
    return load_state(out / "train_state.pt", model, optimizer)


def train(stage: Stage, step: int, log: list, progress=None) -> tuple[int, list]:
    """The one training loop of every stage: warmup and cosine (fitted to `time_budget_s` if given),
    gradient accumulation, a log line every `log_every` steps with validation every fourth, a resumable
    checkpoint and the shipped form every `save_every` (so an interrupted run leaves usable weights).
    Returns the final (step, log)."""
    started, window = time.time(), []
    resumed_at_s = log[-1]["elapsed_s"] if log else 0.0
    budget = StepBudget(stage.steps, stage.time_budget_s, stage.warmup)
    total = stage.steps
    stage.model.train()
    while step < total:
        lr = cosine_lr(step, total, stage.lr, stage.warmup)
        micro = [to_device(next(stage.batches), stage.device) for _ in range(stage.accumulate)]
        loss = accumulated_step(
            stage.model, stage.optimizer, lr, [lambda b=b: stage.loss(b) for b in micro], stage.ddp
        )
        step += 1
        total = budget.update(step, time.time())
        window.append(loss)
        if stage.rank == 0 and (step % stage.log_every == 0 or step == total):
            entry = {
                "step": step,
                "loss": round(float(sum(window) / len(window)), 4),
                "lr": round(lr, 6),
                "planned_steps": total,
                "elapsed_s": round(resumed_at_s + time.time() - started, 1),
            }
            if stage.validate is not None and (step % (stage.log_every * 4) == 0 or step == total):
                entry |= stage.validate()
                stage.model.train()
            log.append(entry)
            window = []
            print(json.dumps(entry), flush=True)
        if stage.rank == 0 and (step % stage.save_every == 0 or step == total):
            save_state(stage.out / "train_state.pt", stage.model, stage.optimizer, step, log)
            stage.save()
        if progress:
            progress(step, total)
    if stage.rank == 0:
        stage.save()
    return step, log


def run_stage(stage: Stage, step: int, log: list, progress=None) -> dict:
    """Train `stage` from (step, log), end it (`finish`) and return its `summary`."""
    step, log = train(stage, step, log, progress)
    finish(stage)
    return summary(stage, step, log)


def finish(stage: Stage, record_digest: bool = True) -> None:
    """End a run under torchrun: each rank records its weights' hash (DDP keeps them identical; the
    tests check), then the process group is shut down."""
    if stage.world == 1:
        return
    if record_digest:
        record_rank_digest(stage.model, stage.out, stage.rank)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def record_rank_digest(model, out: Path, rank: int) -> None:
    """Each rank writes a hash of its weights (`rankN.sha256`)."""
    import hashlib

    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().numpy().tobytes())
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rank}.sha256").write_text(digest.hexdigest())


def summary(stage: Stage, step: int, log: list) -> dict:
    """What a stage reports (and `stages.json` keeps): steps, size, final loss, the last validation."""
    last_valid = next((e for e in reversed(log) if any(k.startswith("valid_") for k in e)), {})
    return {
        "steps": step,
        "params_m": round(sum(p.numel() for p in stage.model.parameters()) / 1e6, 2),
        "final_loss": log[-1]["loss"] if log else None,
        "train_s": log[-1]["elapsed_s"] if log else None,
        **{k: v for k, v in last_valid.items() if k.startswith("valid_")},
        "world_size": stage.world,
    }


def start(threads: int, seed: int) -> tuple[int, int, torch.device]:
    """A stage's process: (rank, world size, device), alone or under torchrun, with `threads` CPU threads
    and torch seeded."""
    rank, world = ddp_setup()
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    return rank, world, train_device()


def save_bf16(model: torch.nn.Module, folder: Path, model_type: str) -> None:
    """The shipped form of a model with a config dataclass, in bf16 (its loader computes in fp32)."""
    from soundstorm.bundles.checkpoints import save_model_folder

    state = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    save_model_folder(folder, state, {"model_type": model_type, **asdict(model.config)})
