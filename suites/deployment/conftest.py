"""The staging plan deployed blue/green, applied once per test process for every file that needs it
(test_blue_green.py, test_rollout_faults.py)."""

import pytest

from harness.paths import environment_file
from pytest_harness.terraform import moto_platform


@pytest.fixture(scope="session")
def blue_green_var_file(tmp_path_factory):
    """staging.tfvars deployed blue/green."""
    path = tmp_path_factory.mktemp("tfvars") / "staging-blue-green.tfvars"
    staging = (environment_file("staging")).read_text()
    path.write_text(staging + '\ndeployment_strategy = "blue_green"\n')
    return path


@pytest.fixture(scope="session")
def blue_green_platform(pytestconfig, terraform, harness_session, blue_green_var_file):
    """The staging plan deployed blue/green, applied to a moto server of its own: moto can neither
    update nor delete a CodeDeploy group (no UpdateDeploymentGroup, DeleteDeploymentGroup or
    DeleteApplication), so the session's shared platform could not be moved back to rolling."""
    with moto_platform(pytestconfig, harness_session) as own:
        own.apply(blue_green_var_file)
        yield own
