"""Background workers: claim queued runs from the store, train them, stream metrics back.

``Worker`` (``workers.worker``) is the loop behind ``dm worker``; ``StoreSink``
(``workers.sink``) batches the training loop's events into the store; ``StopSignals``
(``workers.signals``) is the warm-then-cold stop every long-running command shares.
"""

from workers.sink import StoreSink, pin_checkpoint
from workers.worker import Worker

__all__ = ["StoreSink", "Worker", "pin_checkpoint"]
