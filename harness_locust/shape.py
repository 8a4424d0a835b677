"""The one load shape: stages from the profile's data; ``tick()`` depends only on run time."""

from __future__ import annotations

from typing import ClassVar

from locust import LoadTestShape

from harness.load.profile import stage_at, validate


class StagedShape(LoadTestShape):
    """Each profile subclasses this with ``profile = PROFILE``. Users: the profile's api clients
    plus the poller's nodes (``HealthPoller.fixed_count``). None after the last stage: Locust stops."""

    abstract: ClassVar[bool] = True
    profile: ClassVar[dict] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        validate(cls.profile, cls.__module__)

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        scale = getattr(options, "time_scale", 1.0) or 1.0
        stage = stage_at(self.profile, self.get_run_time(), scale)
        if stage is None:
            return None
        # a compressed profile ramps proportionally faster, so its shape stays the same
        return stage["clients"] + self.profile["poller"]["nodes"], stage["spawn_rate"] / scale
