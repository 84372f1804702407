"""Training small heads on cached features (CALIP-FS, Tip-Adapter-F, PointCLIP's adapter), and checkpoints.

`train_classifier` is generic: `module(*inputs, text) -> logits [B, K]`, where `inputs` is a tuple of tensors that
share their first axis (e.g. `(global [N, D], spatial [N, N_tok, D])` for CALIP-FS). Augmentation is the caller's
job (encode augmented copies and pass them as extra rows).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from calip3d.atomic import atomic_torch_save
from calip3d.errors import CalipError, check_at_least
from calip3d.metrics import topk_accuracy

CHECKPOINT_FORMAT = "calip3d-fewshot"
CHECKPOINT_VERSION = 1

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")


def given_fields(settings: Any) -> dict[str, Any]:
    """The fields of a settings dataclass that are given (not None), by name."""
    return {f.name: getattr(settings, f.name) for f in fields(settings) if getattr(settings, f.name) is not None}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings of `train_classifier`. A setting left None is chosen below: a run's `FewShotConfig.train`
    (the user's choices) over the method's (`FewShotMethod.train_defaults`) over `TRAIN_DEFAULTS` (`over`).
    `warmup_epochs` run at `warmup_lr`; `momentum` is SGD's, `adam_eps` AdamW's; `drop_last` drops an incomplete
    last batch when there is more than one batch; the val accuracy is measured `eval_batch_size` rows at a time."""

    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    optimizer: str | None = None
    schedule: str | None = None
    warmup_epochs: int | None = None
    warmup_lr: float | None = None
    momentum: float | None = None
    adam_eps: float | None = None
    drop_last: bool | None = None
    eval_batch_size: int | None = None
    seed: int | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        check_at_least(self.epochs, 1, "TrainConfig.epochs")
        check_at_least(self.batch_size, 1, "TrainConfig.batch_size")
        check_at_least(self.weight_decay, 0, "TrainConfig.weight_decay")
        if self.lr is not None and not self.lr > 0:
            raise CalipError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            raise CalipError(f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        check_at_least(self.warmup_epochs, 0, "warmup_epochs")  # the fields without a flag: named bare
        if self.optimizer not in (None, *OPTIMIZERS):
            raise CalipError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in (None, *SCHEDULES):
            raise CalipError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")

    def over(self, below: TrainConfig) -> TrainConfig:
        """These settings where given, `below`'s elsewhere."""
        return replace(below, **given_fields(self))

    def as_dict(self) -> dict[str, Any]:
        """The settings that take effect (`TRAIN_DEFAULTS` where none is given), as recorded in results: SGD's
        momentum only with SGD, AdamW's eps only with AdamW, the warm-up lr only with warm-up epochs; never where it
        runs (`device`, `eval_batch_size`)."""
        config = self.over(TRAIN_DEFAULTS)
        unused = {"device", "eval_batch_size", "momentum" if config.optimizer != "sgd" else "adam_eps"}
        if config.warmup_epochs == 0:
            unused.add("warmup_lr")
        return {k: v for k, v in asdict(config).items() if k not in unused}


# Every setting: CALIP-FS's starting point (AdamW, cosine, label smoothing 0.1; docs/calip_fs.md: the paper's settings
# are unknown, choose on the val shots), and what `train_classifier` uses where a config gives none.
TRAIN_DEFAULTS = TrainConfig(epochs=100, lr=1e-3, batch_size=32, weight_decay=1e-4, label_smoothing=0.1,
                             optimizer="adamw", schedule="cosine", warmup_epochs=0, warmup_lr=1e-5, momentum=0.9,
                             adam_eps=1e-8, drop_last=False, eval_batch_size=256, seed=0, device="cpu")


Inputs = torch.Tensor | Sequence[torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class EpochRecord(NamedTuple):
    """One row of the training history. Epoch 0 is the untrained module (eval mode, whole train set); later
    rows give the mean minibatch loss and train accuracy (percent, train mode) of that epoch and the val accuracy
    after it (NaN without val data)."""

    epoch: int
    loss: float
    train_acc: float
    val_acc: float


@dataclass
class TrainResult:
    """`state_dict` is the best-on-val one (CPU copies), already loaded into the module; ties go to the earlier
    epoch; without val data the last epoch is kept."""

    best_epoch: int
    best_val_acc: float
    history: list[EpochRecord]
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    seconds: float


def smooth_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, eps: float = 0.2) -> torch.Tensor:
    """Label-smoothed cross-entropy as in DGCNN / PointCLIP: true class `1 - eps`, each other class `eps / (K - 1)`
    (unlike `F.cross_entropy(label_smoothing=eps)`, which spreads eps over all K classes). Mean over the batch."""
    k = logits.shape[1]
    target = torch.full_like(logits, eps / max(1, k - 1))
    target.scatter_(1, labels.view(-1, 1), 1.0 - eps)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _as_inputs(inputs: Inputs, what: str) -> tuple[torch.Tensor, ...]:
    tensors = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise CalipError(f"{what} must be a tensor or a tuple of tensors")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise CalipError(f"{what}: tensors disagree on the number of samples: {[tuple(t.shape) for t in tensors]}")
    return tensors


def _as_labels(labels: torch.Tensor, n: int, what: str) -> torch.Tensor:
    labels = torch.as_tensor(labels).long().view(-1)
    if labels.numel() != n:
        raise CalipError(f"{what}: {labels.numel()} labels for {n} samples")
    return labels


@torch.no_grad()
def predict(module: nn.Module, inputs: Inputs, text: torch.Tensor, batch_size: int = 256,
            device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits `[N, K]` (float32, CPU) of `module(*inputs, text)` in eval mode, `batch_size` rows at a time.
    The module's train/eval mode is restored afterwards."""
    tensors = _as_inputs(inputs, "inputs")
    was_training = module.training
    module.eval()
    text = text.to(device)
    try:
        out = [module(*(t[i:i + batch_size].to(device) for t in tensors), text).float().cpu()
               for i in range(0, tensors[0].shape[0], batch_size)]
    finally:
        module.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, text.shape[0])


def _lr_at(step: int, total: int, warmup: int, lr: float, warmup_lr: float, schedule: str) -> float:
    """Constant `warmup_lr` for the first `warmup` steps, then `lr` (constant) or cosine from `lr` to 0."""
    if step < warmup:
        return warmup_lr
    if schedule == "constant":
        return lr
    return 0.5 * lr * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, eps=config.adam_eps)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _check_data(train_inputs: Inputs, train_labels: torch.Tensor, val_inputs: Inputs | None,
                val_labels: torch.Tensor | None) -> tuple[tuple[torch.Tensor, ...], torch.Tensor,
                                                          tuple[torch.Tensor, ...], torch.Tensor | None]:
    """(train tensors, train labels, val tensors, val labels or None), checked."""
    train = _as_inputs(train_inputs, "train inputs")
    y_train = _as_labels(train_labels, train[0].shape[0], "train inputs")
    if y_train.numel() == 0:
        raise CalipError("no training samples")
    if val_inputs is None or val_labels is None:
        return train, y_train, (), None
    val = _as_inputs(val_inputs, "val inputs")
    y_val = _as_labels(val_labels, val[0].shape[0], "val inputs")
    if y_val.numel() == 0:
        raise CalipError("the validation set is empty; pass val_inputs=None to keep the last epoch instead")
    return train, y_train, val, y_val


def train_classifier(
    module: nn.Module,
    train_inputs: Inputs,
    train_labels: torch.Tensor,
    val_inputs: Inputs | None,
    val_labels: torch.Tensor | None,
    text: torch.Tensor,
    config: TrainConfig = TrainConfig(),
    loss_fn: LossFn | None = None,
    progress: bool = True,
    desc: str = "training",
    copies: int = 1,
) -> TrainResult:
    """Train the module's trainable parameters with minibatches of `(train_inputs, train_labels)`, with `config`'s
    settings over `TRAIN_DEFAULTS`.

    `copies` > 1: the train rows are that many augmented copies of the same M items, copy after copy (`[A * M]`),
    and epoch e trains on copy (e - 1) mod A only (per-epoch augmentation by cycling pre-encoded copies; with
    A >= epochs every epoch sees a fresh draw, as a data loader re-drawing its augmentation does).

    Loss: `F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)` unless `loss_fn(logits, y)` is given.
    Learning rate per step: `warmup_epochs` epochs at `warmup_lr`, then cosine from `lr` to 0 (or constant).
    Deterministic for a given seed on a given machine: shuffling uses a `torch.Generator(seed)` and dropout draws
    from the global RNG reseeded with `seed` inside `torch.random.fork_rng` (the caller's RNG state is restored).
    The val accuracy is measured after every epoch (and before training, as epoch 0); the best state is loaded
    back into the module at the end.
    """
    config = config.over(TRAIN_DEFAULTS)
    train, y_train, val, y_val = _check_data(train_inputs, train_labels, val_inputs, val_labels)
    has_val = y_val is not None
    if copies < 1 or y_train.numel() % copies:
        raise CalipError(f"{y_train.numel()} train rows cannot be {copies} copies of the same items")
    if loss_fn is None:
        def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)

    device = torch.device(config.device)
    module.to(device)
    text = text.to(device)
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise CalipError(f"{type(module).__name__} has no trainable parameters")

    def evaluate() -> float:
        if not has_val:
            return float("nan")
        return topk_accuracy(predict(module, val, text, config.eval_batch_size, device), y_val)

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(int(config.seed))
        items = y_train.numel() // copies
        first = tuple(t[:items] for t in train)
        train_logits = predict(module, first, text, config.eval_batch_size, device)
        history = [EpochRecord(0, float(loss_fn(train_logits, y_train[:items])),
                               topk_accuracy(train_logits, y_train[:items]), evaluate())]
        best_epoch, best_acc, best_state = 0, history[0].val_acc, _cpu_state(module)
        epochs = _Epochs(module, train, y_train, text, _make_optimizer(params, config), loss_fn, config, device,
                         copies)
        bar = tqdm(range(1, config.epochs + 1), desc=desc, unit="epoch", disable=not progress, leave=False,
                   dynamic_ncols=True)
        for epoch in bar:
            loss, train_acc = epochs.run()
            record = EpochRecord(epoch, loss, train_acc, evaluate())
            history.append(record)
            if not has_val or record.val_acc > best_acc:
                best_epoch, best_acc, best_state = epoch, record.val_acc, _cpu_state(module)
            bar.set_postfix(loss=f"{record.loss:.4f}", val=f"{record.val_acc:.2f}", best=f"{best_acc:.2f}")
        bar.close()
    module.load_state_dict(best_state)
    module.eval()
    return TrainResult(best_epoch, best_acc, history, best_state, time.perf_counter() - start)


class _Epochs:
    """One training epoch after another: seeded shuffling, per-step learning rate, minibatch updates."""

    def __init__(self, module: nn.Module, train: tuple[torch.Tensor, ...], labels: torch.Tensor, text: torch.Tensor,
                 optimizer: torch.optim.Optimizer, loss_fn: LossFn, config: TrainConfig, device: torch.device,
                 copies: int = 1):
        self.module, self.train, self.labels, self.text = module, train, labels, text
        self.optimizer, self.loss_fn, self.config, self.device = optimizer, loss_fn, config, device
        self.items, self.copies, size = labels.numel() // copies, copies, config.batch_size
        n = self.items
        self.batches = n // size if config.drop_last and n >= size else math.ceil(n / size)
        self.total_steps, self.warmup_steps = config.epochs * self.batches, config.warmup_epochs * self.batches
        self.generator = torch.Generator().manual_seed(int(config.seed))
        self.step = self.epoch = 0

    def run(self) -> tuple[float, float]:
        """Train one epoch on the next copy; (mean minibatch loss, train accuracy in percent)."""
        config, size = self.config, self.config.batch_size
        self.module.train()
        offset = (self.epoch % self.copies) * self.items
        self.epoch += 1
        order = offset + torch.randperm(self.items, generator=self.generator)[: self.batches * size]
        loss_sum, correct, seen = 0.0, 0.0, 0
        for rows in order.split(size):
            for group in self.optimizer.param_groups:
                group["lr"] = _lr_at(self.step, self.total_steps, self.warmup_steps, config.lr, config.warmup_lr,
                                     config.schedule)
            labels = self.labels[rows].to(self.device)
            logits = self.module(*(t[rows].to(self.device) for t in self.train), self.text)
            loss = self.loss_fn(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            loss_sum += float(loss.detach()) * rows.numel()
            correct += topk_accuracy(logits.detach(), labels) * rows.numel() / 100.0
            seen += rows.numel()
        return loss_sum / seen, 100.0 * correct / seen


# ------------------------------------------------------------------------------------------------ checkpoints


def _plain(value: Any, what: str) -> Any:
    """A JSON round trip: tuples become lists; anything not JSON-able is a user error."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise CalipError(f"{what} must hold only plain values (str, int, float, bool, None, lists, dicts): {err}") \
            from None


def _difference(key: str, found: Any, expected: Any) -> str:
    if isinstance(found, list) and isinstance(expected, list):
        if len(found) != len(expected):
            return f"{key}: the checkpoint has {len(found)} entries, expected {len(expected)}"
        i = next(i for i, (a, b) in enumerate(zip(found, expected)) if a != b)
        return f"{key}: entry {i} is {found[i]!r} in the checkpoint, expected {expected[i]!r}"
    return f"{key}: the checkpoint has {found!r}, expected {expected!r}"


def save_checkpoint(path: str | Path, module: nn.Module, meta: dict[str, Any]) -> Path:
    """Write `{format, version, state_dict, config: module.describe(), meta}` with `torch.save` (atomically).

    `meta` should name what the weights depend on: backbone name and weights id, class names, dataset, views,
    shots, seed. Only plain values are accepted, so the file loads with `weights_only=True`."""
    describe = getattr(module, "describe", None)
    if describe is None:
        raise CalipError(f"{type(module).__name__} has no describe() method; cannot record its configuration")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "state_dict": _cpu_state(module),
        "config": _plain(describe(), "the module configuration"),
        "meta": _plain(meta, "checkpoint meta"),
    }
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | Path, expected_meta: dict[str, Any] | None = None,
                    module: nn.Module | None = None) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; returns `{format, version, state_dict, config, meta}`.

    Every key of `expected_meta` must equal the stored meta (after the same plain-value normalisation), else a
    `CalipError` names each differing key. With `module`, its `describe()` must match the stored config and the
    weights are loaded into it."""
    path = Path(path)
    if not path.is_file():
        raise CalipError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or damaged files
        raise CalipError(f"{path} is not a readable calip3d checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CalipError(f"{path} is not a calip3d few-shot checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CalipError(f"{path} has checkpoint version {state.get('version')}, this calip3d reads "
                         f"{CHECKPOINT_VERSION}")
    stored = state.get("meta", {})
    if expected_meta:
        wanted = _plain(expected_meta, "expected meta")
        diffs = [f"{k}: missing in the checkpoint, expected {v!r}" if k not in stored else
                 _difference(k, stored[k], v) for k, v in wanted.items() if k not in stored or stored[k] != v]
        if diffs:
            raise CalipError(f"checkpoint {path} was made for another setup:\n  " + "\n  ".join(diffs))
    if module is not None:
        config = _plain(module.describe(), "the module configuration")
        diffs = [_difference(k, state["config"].get(k), v) for k, v in config.items() if state["config"].get(k) != v]
        if diffs:
            raise CalipError(f"checkpoint {path} holds a differently configured module:\n  " + "\n  ".join(diffs))
        try:
            module.load_state_dict(state["state_dict"])
        except RuntimeError as err:
            raise CalipError(f"checkpoint {path} does not fit {type(module).__name__}: {err}") from None
    return state
