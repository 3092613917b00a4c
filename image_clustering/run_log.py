"""The run log: how long each workflow step took and what it counted, kept beside the feature
store (``<feature_dir>/run_log.json``) for the report's "Run" tab. Written by the workflow
(:mod:`image_clustering.pipeline`), read by it when it gathers what the report shows."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .atomic import atomic_write_text

RUN_LOG = "run_log.json"


def read_run_log(feature_dir: Path) -> dict:
    """step → ``{"seconds", "finished", ...counts}``; empty when there is no log or it is damaged."""
    path = Path(feature_dir) / RUN_LOG
    try:
        log = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return log if isinstance(log, dict) else {}


def record_step(feature_dir: Path, step: str, seconds: float, **info) -> None:
    """Remember how long a pipeline step took (and e.g. the extraction counts) for the report's
    "run" section, in ``<feature_dir>/run_log.json``.

    The log describes the run that made the current results, not the last command: an
    ``extract`` that found nothing to compute or remove (as ``tag``, ``cluster`` after ``run``, or
    a re-run do) keeps the record of the extraction that built the store and only notes when the
    store was last checked."""
    log = read_run_log(feature_dir)
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    previous = log.get(step)
    if step == "extract" and isinstance(previous, dict) and not info.get("computed") and not info.get("removed"):
        previous["checked"] = now
    else:
        log[step] = {"seconds": round(seconds, 2), "finished": now, **info}
    atomic_write_text(Path(feature_dir) / RUN_LOG, json.dumps(log, indent=1))
