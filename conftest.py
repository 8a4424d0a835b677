"""This repository's own rule on top of the installed plugin (pytest_harness, loaded by its entry
point): where a test lives is what it judges (tests/ for the harness, suites/<suite>/ for the platform)."""

pytest_plugins = ["pytest_harness.layout"]
