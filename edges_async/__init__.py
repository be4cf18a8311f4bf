"""edges_async: the asyncio-native Python SDK for the Edges runs API.

>>> import edges_async as ea
>>> async with ea.AsyncClient(plan="silver") as client:   # EDGES_API_KEY from the environment
...     async for run in client.runs.list(status="RUNNING"):
...         print(run.uid, run.status)
"""

from __future__ import annotations

from ._backoff import Backoff as Backoff
from ._client import AsyncClient as AsyncClient
from ._exceptions import APIConnectionError as APIConnectionError
from ._exceptions import APIResponseValidationError as APIResponseValidationError
from ._exceptions import APIStatusError as APIStatusError
from ._exceptions import APITimeoutError as APITimeoutError
from ._exceptions import AuthenticationError as AuthenticationError
from ._exceptions import BadRequestError as BadRequestError
from ._exceptions import ClientClosedError as ClientClosedError
from ._exceptions import ConfigurationError as ConfigurationError
from ._exceptions import ConflictError as ConflictError
from ._exceptions import EdgesError as EdgesError
from ._exceptions import EventLoopError as EventLoopError
from ._exceptions import ExportInProgressError as ExportInProgressError
from ._exceptions import FailedDependencyError as FailedDependencyError
from ._exceptions import IncompleteExportError as IncompleteExportError
from ._exceptions import InternalServerError as InternalServerError
from ._exceptions import NotFoundError as NotFoundError
from ._exceptions import PaginationError as PaginationError
from ._exceptions import PaymentRequiredError as PaymentRequiredError
from ._exceptions import PermissionDeniedError as PermissionDeniedError
from ._exceptions import RateLimitError as RateLimitError
from ._exceptions import UnprocessableEntityError as UnprocessableEntityError
from ._exceptions import WaitTimeoutError as WaitTimeoutError
from ._limiter import LimiterStatistics as LimiterStatistics
from ._limiter import RateLimiter as RateLimiter
from ._limiter import WorkspaceRateLimiter as WorkspaceRateLimiter
from ._models import TERMINAL_STATUSES as TERMINAL_STATUSES
from ._models import Callback as Callback
from ._models import ErrorBody as ErrorBody
from ._models import ExecutionMode as ExecutionMode
from ._models import Run as Run
from ._models import RunCallbackInfo as RunCallbackInfo
from ._models import RunErrorInfo as RunErrorInfo
from ._models import RunStatus as RunStatus
from ._pagination import OutputsPage as OutputsPage
from ._plans import PlanTier as PlanTier
from ._polling_policy import PollingPolicy as PollingPolicy
from ._redis_coordination import CoordinationError as CoordinationError
from ._redis_coordination import RedisCoordination as RedisCoordination
from ._version import __version__ as __version__
from ._watcher import RunWatcher as RunWatcher
from .resources import LiveResult as LiveResult

__all__ = [
    "TERMINAL_STATUSES",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "Callback",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "CoordinationError",
    "EdgesError",
    "ErrorBody",
    "EventLoopError",
    "ExecutionMode",
    "ExportInProgressError",
    "FailedDependencyError",
    "IncompleteExportError",
    "InternalServerError",
    "LimiterStatistics",
    "LiveResult",
    "NotFoundError",
    "OutputsPage",
    "PaginationError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "PlanTier",
    "PollingPolicy",
    "RateLimitError",
    "RateLimiter",
    "RedisCoordination",
    "Run",
    "RunCallbackInfo",
    "RunErrorInfo",
    "RunStatus",
    "RunWatcher",
    "UnprocessableEntityError",
    "WaitTimeoutError",
    "WorkspaceRateLimiter",
    "__version__",
]
