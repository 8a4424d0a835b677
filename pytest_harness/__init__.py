"""The harness's pytest plugin, loaded through its ``pytest11`` entry point wherever the harness
is installed: its options, fixtures and hooks, thin over ``harness``. It finds the platform it tests
through the project's ``[tool.harness]`` table (``harness.paths``; docs/plugin.md).

Imports go one way: suites -> pytest_harness -> harness."""

pytest_plugins = [
    "pytest_harness.settings",
    "pytest_harness.stack",
    "pytest_harness.docker",
    "pytest_harness.faults",
    "pytest_harness.terraform",
    "pytest_harness.load",
    "pytest_harness.remote",
    "pytest_harness.evidence",
    "pytest_harness.durations",
]
