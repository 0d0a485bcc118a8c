"""Gunicorn settings for the AIRCTRL API: uvicorn workers sharing one metrics view.

Used by the container image (``gunicorn --config /opt/airctrl/gunicorn.conf.py``)
and by the API cluster deployment. Tunables come from the environment:

* ``AIRCTRL_BIND`` (default ``0.0.0.0:8080``) and ``WEB_CONCURRENCY`` (workers,
  default 2; each worker holds its own Face Landmarker, about 300 MB);
* ``PROMETHEUS_MULTIPROC_DIR``: required with more than one worker. It must be
  in the environment before gunicorn starts (prometheus_client reads it once, at
  import); this file empties it at start-up and drops the live gauges of each
  worker that exits, so ``/metrics`` on any worker shows the merged numbers;
* ``AIRCTRL_CONFIG``: the settings file each worker loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

wsgi_app = "airctrl.api.app:create_app_from_env()"
worker_class = "uvicorn.workers.UvicornWorker"
bind = [os.environ.get("AIRCTRL_BIND", "0.0.0.0:8080")]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# A request may run the model on a large photo or a short video: allow a minute
# before the arbiter declares a worker hung and replaces it.
timeout = int(os.environ.get("AIRCTRL_WORKER_TIMEOUT", "60"))
graceful_timeout = 20
keepalive = 5
# Recycle each worker after a few thousand requests (jittered so they do not
# all restart at once): bounds slow memory growth in native libraries.
max_requests = int(os.environ.get("AIRCTRL_MAX_REQUESTS", "5000"))
max_requests_jitter = max_requests // 10
# Heartbeat files in memory, not on the container's overlay disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Access lines are not written: the API's own logs and metrics cover requests,
# and an access log would record client addresses.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("AIRCTRL_LOG_LEVEL", "info").lower()
# Trust X-Forwarded-* only from the load balancer's addresses.
forwarded_allow_ips = os.environ.get("AIRCTRL_FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server: Any) -> None:
    """Check and empty the shared metrics folder before any worker starts."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        if workers > 1:
            raise RuntimeError(
                "PROMETHEUS_MULTIPROC_DIR must be set (to an empty writable folder) "
                "when WEB_CONCURRENCY > 1, or /metrics would show one worker only"
            )
        return
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the merged metrics."""
    from airctrl.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)
