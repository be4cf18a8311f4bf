"""Receiving Edges callbacks: the body's models and a receiver for ASGI apps and FastAPI.

>>> from edges_async.callbacks import CallbackReceiver
>>> receiver = CallbackReceiver(client, secret=os.environ["EDGES_CALLBACK_SECRET"])
>>> app.include_router(receiver.router("/edges/callbacks"))        # FastAPI
>>> run = await client.actions.run_async(
...     "linkedin-extract-people", inputs=[...],
...     callback=receiver.callback("https://example.com/edges/callbacks"),
... )
>>> await client.wait_for_run(run.uid)   # returns the moment the final callback arrives
"""

from __future__ import annotations

from ._callback_models import CallbackEvent as CallbackEvent
from ._callback_models import CallbackRunInfo as CallbackRunInfo
from ._receiver import DEFAULT_SECRET_HEADER as DEFAULT_SECRET_HEADER
from ._receiver import CallbackReceiver as CallbackReceiver
from ._run_streams import CallbackReader as CallbackReader

__all__ = [
    "DEFAULT_SECRET_HEADER",
    "CallbackEvent",
    "CallbackReader",
    "CallbackReceiver",
    "CallbackRunInfo",
]
