"""Locust's entry point: the two roles and the gate. Give it one profile as the second file:

    locust -f harness_locust/locustfile.py,loadtests/profiles/smoke.py --headless --host http://127.0.0.1:8000

(the first path is where the harness is installed or checked out, the second the project's
``loadtests_dir``; the folder that holds ``harness_locust`` must be importable).

``python -m harness load --profile smoke`` does this, with reports, the stack and the SLO gate wired."""

from harness_locust import gate  # noqa: F401 - registers the options, bounds and verdict listeners
from harness_locust.users.api_client import ApiClient  # noqa: F401 - a user class Locust discovers
from harness_locust.users.health_poller import HealthPoller  # noqa: F401 - a user class Locust discovers
