"""Locust's entry point: the two roles and the gate. Give it one profile as the second file:

    locust -f loadtests/locustfile.py,loadtests/profiles/smoke.py --headless --host http://127.0.0.1:8000

``python -m harness load --profile smoke`` does this, with reports, the stack and the SLO gate wired."""

from loadtests import gate  # noqa: F401 - registers the options, bounds and verdict listeners
from loadtests.users.api_client import ApiClient  # noqa: F401 - a user class Locust discovers
from loadtests.users.health_poller import HealthPoller  # noqa: F401 - a user class Locust discovers
