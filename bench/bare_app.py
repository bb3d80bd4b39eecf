"""A bare Starlette app: the web-stack ceiling for ``/score`` in bench/bench_latency.py.

One ``POST /predict`` route that validates the same request body as ``/score`` (``TransactionIn``), runs the
raw booster's ``inplace_predict`` on one prepared feature row in the event loop, and answers a small JSON
object; ``GET /readyz`` answers 200. No BentoML, no middleware, no thread pool.

The benchmark serves it with ``python -m bench.bare_app --workers N --port P`` (uvicorn, no access log) and the
environment ``BENCH_BOOSTER`` (a saved XGBoost model), ``BENCH_ROW`` (``.npy``, shape ``(1, n_features)``) and
``BENCH_ITERATIONS`` (trees to use, as ``best_iteration + 1``).

Why not ``uvicorn --workers N``: with several workers uvicorn binds ``socket.socket(family=...)`` (protocol 0),
and asyncio only sets ``TCP_NODELAY`` on accepted sockets whose protocol is ``IPPROTO_TCP``, so every response
(headers and body in two writes) waits for the client's delayed ACK: ~40 ms per request at concurrency 1. The
launcher below binds an ``IPPROTO_TCP`` socket itself, for one worker and for several alike.
"""

from __future__ import annotations

import argparse
import os
import socket

import numpy as np
import uvicorn
import xgboost as xgb
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from uvicorn.supervisors import Multiprocess

from data.contract import TransactionIn

_booster = xgb.Booster()
_booster.load_model(os.environ["BENCH_BOOSTER"])
_booster.set_param({"nthread": 1})
_row = np.load(os.environ["BENCH_ROW"])
_iteration_range = (0, int(os.environ["BENCH_ITERATIONS"]))


async def predict(request: Request) -> Response:
    """Validate the transaction, predict the prepared row."""
    try:
        tx = TransactionIn.model_validate_json(await request.body())
    except ValidationError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    p = float(_booster.inplace_predict(_row, iteration_range=_iteration_range)[0])
    return JSONResponse({"transaction_id": tx.transaction_id, "fraud_probability": p})


async def readyz(request: Request) -> Response:
    """Ready once imported (the booster loads at import)."""
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", readyz, methods=["GET"])])


def main() -> None:
    """Serve ``app`` with uvicorn on ``--workers`` processes sharing one TCP listening socket."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # A worker must answer the supervisor's ping within the health-check timeout, counted from its start
    # (imports included: xgboost and the booster take seconds on a busy machine), or it is restarted.
    config = uvicorn.Config(
        "bench.bare_app:app", workers=args.workers, access_log=False, log_level="info", timeout_worker_healthcheck=120
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.set_inheritable(True)
    if args.workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
