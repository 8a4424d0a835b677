"""The one place plugins are listed (suites -> fixtures -> harness)."""

pytest_plugins = [
    "fixtures.settings",
    "fixtures.layout",
    "fixtures.stack",
    "fixtures.docker",
    "fixtures.faults",
    "fixtures.terraform",
    "fixtures.load",
    "fixtures.remote",
    "fixtures.evidence",
    "fixtures.durations",
]
