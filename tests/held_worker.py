"""A worker process that holds each run at an iteration (``Worker(hold_at=k)``,
workers.hold), for tests that look at -- or kill -- a run at a known point however fast the
machine trains. ``dm worker`` has no option for ``hold_at``, so the process builds the
``Worker`` the way ``dm worker`` does (same logging), with the options the tests use.

    proc = subprocess.Popen(held_worker_command(db, artifacts, 75, exit_when_idle=True))
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

SCRIPT = """
import json, logging, sys
from dm_store import Store
from workers import Worker
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
db, artifacts, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
store = Store(db, artifacts)
Worker(store, device="cpu", artifacts_dir=store.artifacts_dir, **options).run()
"""


def held_worker_command(db: str, artifacts: str, hold_at: int | Sequence[int], *,
                        poll: float = 0.2, **options: object) -> list[str]:
    """The argv of a worker process that holds each run after iteration ``hold_at`` (or
    after each of them) until SIGCONT; ``options`` are further ``Worker`` keywords
    (``exit_when_idle``, ``stale_after``)."""
    return [sys.executable, "-c", SCRIPT, db, str(artifacts),
            json.dumps({"poll": poll, "hold_at": hold_at, **options})]
