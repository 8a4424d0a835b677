"""The runs service: a run recorded in MLflow and in Postgres, safe to retry with a key.

A write is an intent first (a pending row with the request's hash: ``begin``), then the MLflow run
tagged with the row's id, then the row completed (``record``). Nothing is deleted on a failure:
the retry with the same key, or a read, claims the pending row (``claim``) and finishes it, finding
the tagged run instead of making a second one.

A claim belongs to the request that made it (an owner token) and lasts a lease that covers the
longest path a request can take, MLflow's own time to carry out a call the api stopped waiting for
included (``API_CLAIM_LEASE``, checked against the others at start-up). So:

- a request gives its claim back when MLflow failed in a way that made nothing (a refusal, no
  connection, a failure before or after the create), and a retry need not wait;
- when the create itself failed without a definite answer (a timeout, a 5xx, a cut connection),
  MLflow may still make the run: the claim is kept, and the answer's Retry-After says when the
  lease ends; only then does a retry search for the tagged run, and by then it is there or never
  will be;
- a resumed write keeps the oldest tagged run and deletes the others; after completing, it deletes
  any tagged run but the row's; a request that finds the row answered by another meanwhile
  deletes the run it made itself and answers the row as it stands;
- only the owner gives back or completes its claim, and a complete row is never written again.

The service knows no HTTP: it answers a ``RunOut`` (``answer``) or raises one of these, which
``errors.py`` turns into answers::

    RunsFailure
    ├── KeyReused         the Idempotency-Key came with another body
    ├── KeyInProgress     a request with the key still holds its pending row
    ├── BeingWritten      a read found the row held by a write at work, or a write was taken over
    ├── RunNotFound       no row with the id
    ├── MlflowRefusedRun  MLflow refused a value of the run
    ├── RunMissingInMlflow  the row's MLflow run is gone
    └── Unavailable       Postgres or MLflow did not answer within the request's deadline

A request shed for want of a slot raises the bulkhead's ``Overloaded``; slots are taken before
claims, so a shed request holds nothing.
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
from services.api.mlflow_client import (
    MlflowClient,
    MlflowNotSent,
    MlflowRejected,
    MlflowUnavailable,
    request_deadline,
)
from services.api.schemas import RunIn, RunOut
from services.api.store import PENDING, RunRow, Store, StoreUnavailable
from services.common import jsonlog

logger = logging.getLogger("api")
RUN_TAG = "api_run_id"  # the MLflow tag that names the api's row of a run


class RunsFailure(Exception):
    """The runs service answers no run; the message says why, for a person. ``retry_after``:
    seconds after which a retry can succeed, when known."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
    dependencies' bulkheads; a pending row is held for ``lease`` seconds by the request that
    claimed it."""

    def __init__(
        self,
        store: Store,
        mlflow: MlflowClient,
        *,
        db_slots: Bulkhead,
        mlflow_slots: Bulkhead,
        request_timeout: float,
        lease: float,
    ) -> None:
        self.store, self.mlflow = store, mlflow
        self.db_slots, self.mlflow_slots = db_slots, mlflow_slots
        self.request_timeout = request_timeout
        self.lease = lease  # how long a request may hold a pending row

    def _deadline(self) -> float:
        """The request's deadline on the loop's clock; MLflow is told it on the wall clock, so no
        call it starts outlives the request (and the lease, which covers the request)."""
        request_deadline.set(time.time() + self.request_timeout)
        return asyncio.get_running_loop().time() + self.request_timeout

    async def write(self, body: RunIn, idempotency_key: str | None = None) -> tuple[RunOut, bool]:
        """The run recorded for ``body``, and whether this call recorded it (else an earlier one
        with the same key had)."""
        intent = self.intent(body, idempotency_key)
        owner = uuid.uuid4()
        # the MLflow slot first: a write shed for want of one has recorded and claimed nothing
        async with self.mlflow_slots.slot():
            deadline = self._deadline()  # one deadline for the claim and MLflow, which the lease covers
            row, fresh = await self.begin(intent, owner, deadline)
            if not fresh and not row.pending:
                return self.answer(row), False
            done, recorded = await self.record(row, owner, not fresh, deadline)
            return self.answer(done), recorded

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

    async def begin(self, intent: RunRow, owner: uuid.UUID, deadline: float) -> tuple[RunRow, bool]:
        """The row for the intent's key, and whether it is new. A new row is claimed by ``owner``;
        an earlier pending row with the key is claimed here, or ``KeyInProgress`` when another
        request holds it; a complete one is left as it is."""
        claiming = intent.id
        try:
            async with asyncio.timeout_at(deadline), self.db_slots.slot():
                row, fresh = await self.store.begin(intent, self.lease, owner)
                claiming = row.id
                if not fresh and row.request_hash != intent.request_hash:
                    raise KeyReused("this Idempotency-Key was sent with another body")
                if not fresh and row.pending and not await self.store.claim(row.id, self.lease, owner):
                    raise KeyInProgress(
                        "a request with this Idempotency-Key is still at work", await self.store.held_for(row.id)
                    )
        except (StoreUnavailable, TimeoutError) as exc:
            await self.release(claiming, owner)  # the intent or the claim may have committed, its answer lost
            raise Unavailable(f"postgres: {exc or 'request deadline exceeded'}") from exc
        return row, fresh

    async def record(self, row: RunRow, owner: uuid.UUID, resumed: bool, deadline: float) -> tuple[RunRow, bool]:
        """The MLflow run for a pending row ``owner`` claimed (found by its tag when an earlier
        attempt may have made it), then the row completed; the caller holds an MLflow slot.
        Returns the row as it stands and whether this call completed it. Nothing is deleted on a
        failure: the row stays pending for a retry with its key, or a read, to finish."""
        claimed_at = asyncio.get_running_loop().time()
        creating, made = False, None
        try:
            async with asyncio.timeout_at(deadline):
                exp_id = await self.mlflow.experiment_id(row.experiment)
                now_ms = int(time.time() * 1000)
                found = await self._keep_one(exp_id, row.id) if resumed else None
                if found is None:
                    creating = True
                    made = run_id = await self.mlflow.create_run(exp_id, row.run_name, now_ms, {RUN_TAG: str(row.id)})
                    creating = False
                    await self.mlflow.log_and_finish(run_id, row.params, row.metrics, now_ms)
                else:
                    run_id = await self.mlflow.finish_run(found, row.params, row.metrics, now_ms)
        except (MlflowUnavailable, MlflowRejected, TimeoutError) as exc:
            reason = f"mlflow: {exc or 'request deadline exceeded'}"
            if creating and not isinstance(exc, (MlflowRejected, MlflowNotSent)):
                # MLflow may still make the run: the claim stays until the lease ends, when the
                # run is there to be found or never will be
                left = max(1.0, self.lease - (asyncio.get_running_loop().time() - claimed_at))
                held = f"{reason}; the run may still be made: its key is held for {left:.0f}s"
                raise Unavailable(held, left) from exc
            await self.release(row.id, owner)
            if isinstance(exc, MlflowRejected):
                # the id kept for the name may be a deleted experiment's: asked again next time
                self.mlflow.forget_experiment(row.experiment)
                raise MlflowRefusedRun(str(exc)) from exc
            raise Unavailable(reason) from exc
        try:
            async with asyncio.timeout(self.request_timeout), self.db_slots.slot():
                done = await self.store.complete(row.id, exp_id, run_id, owner)
                stands = done or await self.store.get(row.id)
        except (StoreUnavailable, TimeoutError, Overloaded) as exc:
            # the update may have committed with its answer lost: the retry or a read will see. If
            # it did not, the claim is given back (only a pending row of this owner's is): the run
            # is made and finished, a retry finds it by its tag at once
            await self.release(row.id, owner)
            raise Unavailable(
                f"postgres: {exc or 'request deadline exceeded'}; the run is made, retry the key"
            ) from exc
        if stands is None or stands.pending:
            # another request took the row over when this one's lease ran out; it finishes it, and
            # removes a run this one made, should it keep another
            raise BeingWritten("another request took this write over and finishes it", 1.0)
        if stands.mlflow_run_id != run_id and made == run_id:
            await self._delete(made, row.id)  # answered by another meanwhile: this run is a duplicate
        elif done is not None and resumed:
            await self._sweep(exp_id, row.id, done.mlflow_run_id)
        return stands, done is not None

    async def _keep_one(self, exp_id: str, row_id: uuid.UUID) -> dict[str, Any] | None:
        """The oldest active run tagged with the row (an earlier attempt's), the others deleted."""
        runs = await self.mlflow.find_runs(exp_id, RUN_TAG, str(row_id))
        for extra in runs[1:]:
            await self.mlflow.delete_run(str(extra["info"]["run_id"]))
        return runs[0] if runs else None

    async def _sweep(self, exp_id: str, row_id: uuid.UUID, keep: str) -> None:
        """Best effort, after a resumed write completed its row: delete any other run tagged with
        it (one a request made after this one searched, while its lease ran out)."""
        try:
            async with asyncio.timeout(self._after_deadline()):
                for run in await self.mlflow.find_runs(exp_id, RUN_TAG, str(row_id)):
                    if run["info"]["run_id"] != keep:
                        await self._delete(str(run["info"]["run_id"]), row_id)
        except (MlflowUnavailable, MlflowRejected, TimeoutError) as exc:
            self._could_not("sweep the runs tagged with a completed row", row_id, exc)

    def _after_deadline(self) -> float:
        """Clean-up after the row is answered may outlast the request's deadline: its MLflow calls
        get a deadline of their own (the fence would refuse them), and as long to finish."""
        request_deadline.set(time.time() + self.request_timeout)
        return self.request_timeout

    async def _delete(self, mlflow_run_id: str, row_id: uuid.UUID) -> None:
        try:
            async with asyncio.timeout(self._after_deadline()):
                await self.mlflow.delete_run(mlflow_run_id)
        except (MlflowUnavailable, MlflowRejected, TimeoutError) as exc:
            self._could_not(f"delete the duplicate MLflow run {mlflow_run_id}", row_id, exc)

    @staticmethod
    def _could_not(what: str, row_id: uuid.UUID, exc: Exception) -> None:
        jsonlog.log(logger, f"could not {what}", logging.WARNING, run_id=str(row_id), error=type(exc).__name__)

    async def release(self, run_id: uuid.UUID, owner: uuid.UUID) -> None:
        """Best effort: give a pending row back so a retry need not wait out the lease."""
        try:
            await self.store.release(run_id, owner)
        except Exception as exc:  # noqa: BLE001 - the caller already answers the failure
            self._could_not("release a pending run", run_id, exc)

    async def read(self, run_id: uuid.UUID) -> RunOut:
        """The run as both stores hold it; a pending row (a write cut short) is finished first."""
        try:
            async with asyncio.timeout(self.request_timeout), self.db_slots.slot():
                row = await self.store.get(run_id)
        except (StoreUnavailable, TimeoutError) as exc:
            raise Unavailable(f"postgres: {exc or 'request deadline exceeded'}") from exc
        if row is None:
            raise RunNotFound(f"no run {run_id}")
        # the MLflow slot before the claim: a read that queues or is shed holds no claim
        async with self.mlflow_slots.slot():
            if row.pending:
                row = await self._resume(row)
            try:
                async with asyncio.timeout(self.request_timeout):
                    run = await self.mlflow.get_run(row.mlflow_run_id)
            except (MlflowUnavailable, TimeoutError) as exc:
                raise Unavailable(f"mlflow: {exc or 'request deadline exceeded'}") from exc
            except MlflowRejected as exc:
                raise RunMissingInMlflow(str(exc)) from exc
        if run.get("info", {}).get("lifecycle_stage") == "deleted":
            raise RunMissingInMlflow(f"MLflow's run {row.mlflow_run_id} is deleted")
        return self.answer(row, run)

    async def _resume(self, row: RunRow) -> RunRow:
        """A read's claim of a pending row (a write cut short) and its ``record``."""
        owner, deadline = uuid.uuid4(), self._deadline()
        try:
            async with asyncio.timeout_at(deadline), self.db_slots.slot():
                if not await self.store.claim(row.id, self.lease, owner):
                    now = await self.store.get(row.id)
                    if now is not None and not now.pending:
                        return now  # completed meanwhile by the request that held it
                    raise BeingWritten("the run is being written", await self.store.held_for(row.id))
        except (StoreUnavailable, TimeoutError) as exc:
            raise Unavailable(f"postgres: {exc or 'request deadline exceeded'}") from exc
        done, _ = await self.record(row, owner, True, deadline)
        return done

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
