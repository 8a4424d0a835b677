"""The api service: FastAPI app, health checks, runs API. Run with ``python -m services.api``."""
