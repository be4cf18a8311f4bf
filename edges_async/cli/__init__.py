"""``edges``: the Edges runs API on the command line (extra: ``pip install 'edges-async[cli]'``).

Built on the public :class:`edges_async.AsyncClient` only, and configured like
it (``--api-key``/``EDGES_API_KEY``, ``--plan``/``EDGES_PLAN``,
``--base-url``/``EDGES_BASE_URL``)::

    edges runs list --status RUNNING
    edges --json runs wait --from uids.txt --timeout 3600 > finished.jsonl
    edges launch linkedin-extract-people --inputs people.csv --wait --export outputs/

Results go to stdout (a table, or one JSON object per line with ``--json``);
progress and messages go to stderr, live only when it is a terminal. ``edges
--help`` lists the exit statuses.
"""

from __future__ import annotations

from ._app import main as main

__all__ = ["main"]
