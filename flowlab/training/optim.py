"""Optax optimisers and learning-rate schedules from plain settings (by name)."""

import optax

from .. import registry

__all__ = ["OPTIMIZERS", "SCHEDULES", "make_optimizer", "make_schedule"]


@registry.register("lr_schedule", "constant")
def _constant(lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    del total_steps, warmup_steps
    return optax.constant_schedule(lr)


@registry.register("lr_schedule", "cosine")
def _cosine(lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    del warmup_steps
    return optax.cosine_decay_schedule(lr, max(total_steps, 1))


@registry.register("lr_schedule", "warmup_cosine")
def _warmup_cosine(lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, max(warmup_steps, 1), max(total_steps, warmup_steps + 1)
    )


@registry.register("lr_schedule", "linear")
def _linear(lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    del warmup_steps
    return optax.linear_schedule(lr, 0.0, max(total_steps, 1))


@registry.register("optimizer", "adam")
def _adam(lr, b1: float, b2: float, weight_decay: float):
    del weight_decay
    return optax.adam(lr, b1=b1, b2=b2)


@registry.register("optimizer", "adamw")
def _adamw(lr, b1: float, b2: float, weight_decay: float):
    return optax.adamw(lr, b1=b1, b2=b2, weight_decay=weight_decay)


@registry.register("optimizer", "sgd")
def _sgd(lr, b1: float, b2: float, weight_decay: float):
    del b2, weight_decay
    return optax.sgd(lr, momentum=b1)


@registry.register("optimizer", "lion")
def _lion(lr, b1: float, b2: float, weight_decay: float):
    return optax.lion(lr, b1=b1, b2=b2, weight_decay=weight_decay)


OPTIMIZERS = ("adam", "adamw", "sgd", "lion")
"""Optimiser names accepted by `make_optimizer` (registry kind `optimizer`)."""

SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear")
"""Learning-rate schedule names accepted by `make_schedule` (kind `lr_schedule`)."""


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
    return registry.build(
        "lr_schedule",
        schedule,
        lr=lr,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
    )


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
    registry.lookup("optimizer", name)  # an unknown name, before any work
    lr_fn = make_schedule(
        lr, schedule, total_steps=total_steps, warmup_steps=warmup_steps
    )
    opt = registry.build(
        "optimizer", name, lr=lr_fn, b1=b1, b2=b2, weight_decay=weight_decay
    )
    if grad_clip is not None:
        if not grad_clip > 0:
            raise ValueError(f"grad_clip must be positive, got {grad_clip}.")
        opt = optax.chain(optax.clip_by_global_norm(grad_clip), opt)
    return opt, lr_fn
