"""The runs service: a run recorded in MLflow and in Postgres, safe to retry with a key.

A write is an intent first (a pending row with the request's hash: ``begin``), then the MLflow run
tagged with the row's id, then the row completed (``record``). Nothing is deleted on a failure:
the retry with the same key, or a read, claims the pending row (``claim``) and finishes it, finding
the tagged run instead of making a second one. A request gives its claim back when MLflow fails
(``release``), so a retry need not wait out the lease. The service knows no HTTP: it answers a
``RunOut`` (``answer``) or raises one of these, which ``errors.py`` turns into answers::

    RunsFailure
    ├── KeyReused         the Idempotency-Key came with another body
    ├── KeyInProgress     a request with the key still holds its pending row
    ├── BeingWritten      a read found the row held by a write at work
    ├── RunNotFound       no row with the id
    ├── MlflowRefusedRun  MLflow refused a value of the run
    ├── RunMissingInMlflow  the row's MLflow run is gone
    └── Unavailable       Postgres or MLflow did not answer within the request's deadline

A request shed for want of a slot raises the bulkhead's ``Overloaded``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from typing import Any

from services.api.bulkhead import Bulkhead, Overloaded
from services.api.mlflow_client import MlflowClient, MlflowRejected, MlflowUnavailable
from services.api.schemas import RunIn, RunOut
from services.api.store import PENDING, RunRow, Store, StoreUnavailable
from services.common import jsonlog

logger = logging.getLogger("api")
RUN_TAG = "api_run_id"  # the MLflow tag that names the api's row of a run


class RunsFailure(Exception):
    """The runs service answers no run; the message says why, for a person."""


class KeyReused(RunsFailure):
    pass


class KeyInProgress(RunsFailure):
    pass


class BeingWritten(RunsFailure):
    pass


class RunNotFound(RunsFailure):
    pass


class MlflowRefusedRun(RunsFailure):
    pass


class RunMissingInMlflow(RunsFailure):
    pass


class Unavailable(RunsFailure):
    pass


class RunsService:
    """Writes and reads of runs over the two stores, each bounded by ``request_timeout`` and by the
    dependencies' bulkheads; a pending row is held for a lease of 3 x ``request_timeout``."""

    def __init__(
        self,
        store: Store,
        mlflow: MlflowClient,
        *,
        db_slots: Bulkhead,
        mlflow_slots: Bulkhead,
        request_timeout: float,
    ) -> None:
        self.store, self.mlflow = store, mlflow
        self.db_slots, self.mlflow_slots = db_slots, mlflow_slots
        self.request_timeout = request_timeout
        self.lease = 3 * request_timeout  # how long a request may hold a pending row

    async def write(self, body: RunIn, idempotency_key: str | None = None) -> tuple[RunOut, bool]:
        """The run recorded for ``body``, and whether this call recorded it (else an earlier one
        with the same key had)."""
        intent = self.intent(body, idempotency_key)
        # the MLflow slot first: a write shed for want of one has recorded nothing anywhere
        async with self.mlflow_slots.slot():
            row, fresh = await self.begin(intent)
            if not fresh and not row.pending:
                return self.answer(row), False
            return self.answer(await self.record(row, resumed=not fresh)), True

    @staticmethod
    def intent(body: RunIn, idempotency_key: str | None) -> RunRow:
        """The pending row a write starts from, with the hash that tells a retry from a reuse."""
        digest = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
        return RunRow(
            uuid.uuid4(),
            body.experiment,
            "",
            "",
            body.name or f"run-{uuid.uuid4().hex[:8]}",
            dict(body.params),
            dict(body.metrics),
            state=PENDING,
            idempotency_key=idempotency_key,
            request_hash=digest,
        )

    async def begin(self, intent: RunRow) -> tuple[RunRow, bool]:
        """The row for the intent's key, and whether it is new. A new row is claimed by this call;
        an earlier pending row with the key is claimed here, or ``KeyInProgress`` when another
        request holds it; a complete one is left as it is."""
        try:
            async with asyncio.timeout(self.request_timeout), self.db_slots.slot():
                row, fresh = await self.store.begin(intent, self.lease)
                if not fresh and row.request_hash != intent.request_hash:
                    raise KeyReused("this Idempotency-Key was sent with another body")
                if not fresh and row.pending and not await self.store.claim(row.id, self.lease):
                    raise KeyInProgress("a request with this Idempotency-Key is still at work")
        except (StoreUnavailable, TimeoutError) as exc:
            raise Unavailable(f"postgres: {exc or 'request deadline exceeded'}") from exc
        return row, fresh

    async def record(self, row: RunRow, resumed: bool) -> RunRow:
        """The MLflow run for a claimed pending row (found by its tag when an earlier attempt may
        have made it), then the row completed; the caller holds an MLflow slot. Nothing is
        deleted on a failure: the row stays pending for a retry with its key, or a read, to finish."""
        try:
            async with asyncio.timeout(self.request_timeout):
                exp_id = await self.mlflow.experiment_id(row.experiment)
                now_ms = int(time.time() * 1000)
                found = await self.mlflow.find_run(exp_id, RUN_TAG, str(row.id)) if resumed else None
                if found is None:
                    run_id = await self.mlflow.log_run(
                        exp_id, row.run_name, row.params, row.metrics, now_ms, tags={RUN_TAG: str(row.id)}
                    )
                else:
                    run_id = await self.mlflow.finish_run(found, row.params, row.metrics, now_ms)
        except (MlflowUnavailable, MlflowRejected, TimeoutError) as exc:
            await self.release(row.id)
            if isinstance(exc, MlflowRejected):
                raise MlflowRefusedRun(str(exc)) from exc
            raise Unavailable(f"mlflow: {exc or 'request deadline exceeded'}") from exc
        try:
            async with asyncio.timeout(self.request_timeout), self.db_slots.slot():
                return await self.store.complete(row.id, exp_id, run_id)
        except (StoreUnavailable, TimeoutError) as exc:
            # the update may have committed with its answer lost: the retry or a read will see
            raise Unavailable(f"postgres: {exc or 'request deadline exceeded'}") from exc

    async def release(self, run_id: uuid.UUID) -> None:
        """Best effort: give a pending row back so a retry need not wait out the lease."""
        try:
            await self.store.release(run_id)
        except Exception as exc:  # noqa: BLE001 - the caller already answers the failure
            jsonlog.log(
                logger,
                "could not release a pending run",
                logging.WARNING,
                run_id=str(run_id),
                error=type(exc).__name__,
            )

    async def read(self, run_id: uuid.UUID) -> RunOut:
        """The run as both stores hold it; a pending row (a write cut short) is finished first."""
        try:
            async with asyncio.timeout(self.request_timeout), self.db_slots.slot():
                row = await self.store.get(run_id)
                if row is not None and row.pending and not await self.store.claim(row.id, self.lease):
                    raise BeingWritten("the run is being written")
        except (StoreUnavailable, TimeoutError) as exc:
            raise Unavailable(f"postgres: {exc or 'request deadline exceeded'}") from exc
        if row is None:
            raise RunNotFound(f"no run {run_id}")
        if row.pending:
            row = await self._finish(row)
        try:
            async with asyncio.timeout(self.request_timeout), self.mlflow_slots.slot():
                run = await self.mlflow.get_run(row.mlflow_run_id)
        except (MlflowUnavailable, TimeoutError) as exc:
            raise Unavailable(f"mlflow: {exc or 'request deadline exceeded'}") from exc
        except MlflowRejected as exc:
            raise RunMissingInMlflow(str(exc)) from exc
        return self.answer(row, run)

    async def _finish(self, row: RunRow) -> RunRow:
        """A read's ``record`` of the pending row it claimed; shed before it got an MLflow slot, it
        gives the claim back (shed later, at the row's update, the lease runs out as for a write)."""
        admitted = False
        try:
            async with self.mlflow_slots.slot():
                admitted = True
                return await self.record(row, resumed=True)
        except Overloaded:
            if not admitted:
                await self.release(row.id)
            raise

    @staticmethod
    def answer(row: RunRow, mlflow_run: dict[str, Any] | None = None) -> RunOut:
        """The run as recorded (its params and metrics as MLflow holds them, when given its run);
        its ids go to the request's log line."""
        jsonlog.add_fields({"run_id": str(row.id), "mlflow_run_id": row.mlflow_run_id})
        data = (mlflow_run or {}).get("data", {})
        return RunOut(
            id=row.id,
            experiment=row.experiment,
            experiment_id=row.experiment_id,
            mlflow_run_id=row.mlflow_run_id,
            name=row.run_name,
            params={p["key"]: p["value"] for p in data["params"]} if "params" in data else row.params,
            metrics={m["key"]: m["value"] for m in data["metrics"]} if "metrics" in data else row.metrics,
            created_at=row.created_at or None,
            mlflow_status=(mlflow_run or {}).get("info", {}).get("status", "FINISHED"),
        )
