"""Number formatting shared by the reproductions' tables."""

import math

__all__ = ["decimals", "num", "seed_range"]


def decimals(x: float, digits: int = 3) -> int:
    """Decimals that show `x` to `digits` significant figures (none above that)."""
    if x == 0 or not math.isfinite(x):
        return 0
    return max(0, digits - 1 - math.floor(math.log10(abs(x))))


def num(x: float | None, digits: int = 3, fixed: int | None = None) -> str:
    """`x` to `digits` significant figures, or to `fixed` decimals; `–` if missing."""
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0 and fixed is None:
        return "0"
    return f"{x:,.{decimals(x, digits) if fixed is None else fixed}f}"


def seed_range(seeds: list[int]) -> str:
    """`0–4` for consecutive seeds (three or more), else a comma-separated list."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))
