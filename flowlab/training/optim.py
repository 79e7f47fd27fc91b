"""Optax optimisers and learning-rate schedules from plain settings."""

import optax

__all__ = ["OPTIMIZERS", "SCHEDULES", "make_optimizer", "make_schedule"]

OPTIMIZERS = ("adam", "adamw", "sgd", "lion")
"""Optimiser names accepted by `make_optimizer`."""

SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear")
"""Learning-rate schedule names accepted by `make_schedule`."""


def make_schedule(
    lr: float,
    schedule: str = "constant",
    *,
    total_steps: int = 1,
    warmup_steps: int = 0,
) -> optax.Schedule:
    """A learning-rate schedule: `constant`, `cosine`, `warmup_cosine` or `linear`."""
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}.")
    if schedule == "constant":
        return optax.constant_schedule(lr)
    if schedule == "cosine":
        return optax.cosine_decay_schedule(lr, max(total_steps, 1))
    if schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, lr, max(warmup_steps, 1), max(total_steps, warmup_steps + 1)
        )
    if schedule == "linear":
        return optax.linear_schedule(lr, 0.0, max(total_steps, 1))
    raise ValueError(f"unknown lr schedule {schedule!r}; expected one of {SCHEDULES}.")


def make_optimizer(
    name: str = "adamw",
    lr: float = 1e-3,
    *,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    total_steps: int = 1,
    warmup_steps: int = 0,
    grad_clip: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """An optax optimiser and its learning-rate schedule (for logging).

    Returns:
        `(optimizer, lr_schedule)`; with `grad_clip`, global-norm clipping comes first.
    """
    lr_fn = make_schedule(
        lr, schedule, total_steps=total_steps, warmup_steps=warmup_steps
    )
    if name == "adam":
        opt = optax.adam(lr_fn, b1=b1, b2=b2)
    elif name == "adamw":
        opt = optax.adamw(lr_fn, b1=b1, b2=b2, weight_decay=weight_decay)
    elif name == "sgd":
        opt = optax.sgd(lr_fn, momentum=b1)
    elif name == "lion":
        opt = optax.lion(lr_fn, b1=b1, b2=b2, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}.")
    if grad_clip is not None:
        if not grad_clip > 0:
            raise ValueError(f"grad_clip must be positive, got {grad_clip}.")
        opt = optax.chain(optax.clip_by_global_norm(grad_clip), opt)
    return opt, lr_fn
