"""The run log: how long each workflow step took and what it counted, kept beside the feature
store (``<feature_dir>/run_log.json``) for the report's "Run" tab. Written by the workflow
(:mod:`image_clustering.pipeline`), read by it when it gathers what the report shows."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .atomic import atomic_write_text

RUN_LOG = "run_log.json"
logger = logging.getLogger(__name__)


def read_run_log(feature_dir: Path) -> dict:
    """step → ``{"seconds", "finished", ...counts}``; steps of another shape are left out, and an
    unreadable log (damaged, not JSON, not an object) reads as empty, with a warning."""
    path = Path(feature_dir) / RUN_LOG
    if not path.is_file():
        return {}
    try:
        log = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(log, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        logger.warning(f"{path}: unreadable run log ({type(exc).__name__}), starting a new one")
        return {}
    ok = {step: doc for step, doc in log.items()
          if isinstance(doc, dict) and isinstance(doc.get("seconds"), (int, float)) and not isinstance(doc["seconds"], bool)}
    for doc in ok.values():  # counts must be whole numbers, or they are not shown
        for name in [k for k, v in doc.items() if k in ("computed", "reused", "removed", "failed")
                     and not (isinstance(v, int) and not isinstance(v, bool))]:
            del doc[name]
    return ok


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
