"""Value checks shared by the config sections: each raises `ConfigError` naming the field and the valid range."""

from __future__ import annotations

from mindhier.errors import ConfigError

SCHEDULES = ("constant", "cosine")


def check_schedule(section: str, schedule: str) -> None:
    if schedule not in SCHEDULES:
        raise ConfigError(
            f"{section}.schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}; use one of those"
        )


def check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}; set it within that range")
