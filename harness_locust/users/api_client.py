"""api clients: log runs, read their own runs back (the data must match what was written), and ask
for runs that do not exist. Weights give the mix: 2 writes, 6 reads, 1 miss."""

from __future__ import annotations

import random
import uuid

from locust import FastHttpUser, task

from harness.load.matcher import reason

KEEP = 200  # run ids a client remembers for reads


class ApiClient(FastHttpUser):
    weight = 1
    network_timeout = 30.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.low, self.high = self.environment.shape_class.profile["client_wait"]
        self.experiment = f"load-{self.environment.parsed_options.profile_name or 'adhoc'}"
        self.written: dict[str, dict[str, str]] = {}  # run id -> params it was written with
        self.seq = 0

    def wait_time(self) -> float:
        return random.uniform(self.low, self.high)

    @task(2)
    def write(self) -> None:
        self.seq += 1
        params = {"client": str(id(self)), "seq": str(self.seq)}
        body = {"experiment": self.experiment, "params": params, "metrics": {"loss": round(random.random(), 6)}}
        with self.client.post("/runs", json=body, name="/runs", catch_response=True) as r:
            data = _json(r)
            if r.status_code != 201:
                r.failure(_why(r, data))
            elif not isinstance(data, dict) or not data.get("mlflow_run_id") or data.get("params") != params:
                r.failure(f"201 without the run it should hold: {str(data)[:160]}")
            else:
                if len(self.written) >= KEEP:
                    self.written.pop(next(iter(self.written)))
                self.written[data["id"]] = params

    @task(6)
    def read(self) -> None:
        if not self.written:
            return self.write()
        run_id = random.choice(list(self.written))
        with self.client.get(f"/runs/{run_id}", name="/runs/{id}", catch_response=True) as r:
            data = _json(r)
            if r.status_code != 200:
                r.failure(_why(r, data))
            elif not isinstance(data, dict) or data.get("params") != self.written[run_id]:
                r.failure(f"read back differs from what was written: {str(data)[:160]}")
            else:
                r.success()

    @task(1)
    def missing(self) -> None:
        with self.client.get(f"/runs/{uuid.uuid4()}", name="/runs/{id} (missing)", catch_response=True) as r:
            if r.status_code == 404:
                r.success()
            else:
                r.failure(f"expected 404 for an unknown run; {reason(r.status_code, _json(r), r.error)}")


def _why(response: object, data: object) -> str:
    """The failure's reason; a 503 must say when to retry (Retry-After), or the text says it did not."""
    text = reason(response.status_code, data, response.error)  # type: ignore[attr-defined]
    if response.status_code == 503 and not response.headers.get("retry-after"):  # type: ignore[attr-defined]
        text += " (no Retry-After header)"
    return text


def _json(response: object) -> object:
    try:
        return response.json()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - no body, or not JSON: the status says enough
        return None
