"""A bare FastAPI endpoint served exactly as the api is (uvicorn, no access log, one worker):
the framework's own ceiling, beside which /health and /health/live are measured.

    .venv/bin/python bench/bare_app.py PORT
"""

import sys

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()


@app.get("/bare")
async def bare() -> JSONResponse:
    return JSONResponse({"status": "pass"})


if __name__ == "__main__":
    uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False, lifespan="on")
    ).run()
