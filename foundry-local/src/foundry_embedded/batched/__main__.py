"""`python -m foundry_embedded.batched MODEL_DIR MODEL_ID PORT [MAX_ROWS [THREADS]]`: the batched engine on
127.0.0.1:PORT, started and stopped by the gateway (batched.process.BatchedEngine); /healthz answers once the model
is loaded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import structlog
import uvicorn

from foundry_common.logs import configure_logging
from foundry_embedded.batched.model import StepModel
from foundry_embedded.batched.scheduler import Scheduler
from foundry_embedded.batched.server import create_app

log = structlog.get_logger("foundry_embedded.batched")


def main() -> None:
    folder, model_id, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    max_rows = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    configure_logging(os.environ.get("LOG_LEVEL", "info").lower(), os.environ.get("LOG_FORMAT", "json").lower())
    model = StepModel(folder, threads)
    scheduler = Scheduler(model, max_rows)
    scheduler.start()
    log.info("batched_engine_ready", model=model_id, port=port, max_rows=max_rows)
    try:
        uvicorn.run(create_app(model, model_id, scheduler), host="127.0.0.1", port=port, log_config=None,
                    access_log=False)  # fmt: skip
    finally:
        scheduler.stop()


if __name__ == "__main__":
    main()
