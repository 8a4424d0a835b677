"""The api's effective timing settings for a stack, from the api's own configuration model,
so that budgets follow the service's configuration instead of being retyped."""

from __future__ import annotations

from services.api.config import Settings as ApiSettings


def api_settings(api_env: dict[str, str]) -> ApiSettings:
    fields = {k.removeprefix("API_").lower(): v for k, v in api_env.items() if k.startswith("API_")}
    fields.setdefault("database_url", "postgresql://placeholder@localhost/api")
    fields.setdefault("mlflow_url", "http://localhost/mlflow")
    return ApiSettings.model_validate(fields)
