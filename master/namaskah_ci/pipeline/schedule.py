"""Cron lines (`schedule:` in the pipeline file) as Buildbot `Nightly` arguments.

Five fields, UTC (the master runs with TZ=UTC): minute, hour, day of month,
month, day of week (0 or 7 = Sunday, as in cron). Each field is `*`, a number,
a list (`1,15`), a range (`1-5`) or a step (`*/15`, `0-30/10`). Buildbot
counts weekdays from Monday = 0, so cron's Saturday (6) becomes 5.
"""

from __future__ import annotations

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("dayOfMonth", 1, 31), ("month", 1, 12), ("dayOfWeek", 0, 7))


class CronError(ValueError):
    """The message names the field and what is wrong."""


def _numbers(text: str, name: str, low: int, high: int) -> list[int]:
    found: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: bad step {step_text!r}")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            if not (first.isdigit() and last.isdigit()):
                raise CronError(f"{name}: bad range {body!r}")
            start, end = int(first), int(last)
        elif body.isdigit():
            start = end = int(body)
            if step_text:
                end = high
        else:
            raise CronError(f"{name}: {part!r} is not a number, range, list or */step")
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise CronError(f"{name}: {part!r} is outside {low}-{high}")
        found.update(range(start, end + 1, step))
    return sorted(found)


def parse_cron(line: str) -> dict[str, int | list[int]]:
    """`"35 19 * * 6"` → `{"minute": 35, "hour": 19, "dayOfWeek": 5}` (fields left `*` are omitted)."""
    parts = line.split()
    if len(parts) != len(FIELDS):
        raise CronError(f"expected 5 cron fields (minute hour day-of-month month day-of-week), got {len(parts)}")
    kwargs: dict[str, int | list[int]] = {}
    for text, (name, low, high) in zip(parts, FIELDS, strict=True):
        if text == "*":
            continue
        values = _numbers(text, name, low, high)
        if name == "dayOfWeek":
            values = sorted({(value - 1) % 7 for value in values})  # cron Sunday 0/7 -> Buildbot 6
        kwargs[name] = values[0] if len(values) == 1 else values
    return kwargs
