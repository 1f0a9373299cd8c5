"""One error tree for the whole project (modelled on httpx's ``_exceptions.py``).

Every message names the request (method and path) but never a secret, a token
or a query string that could carry one: callers catch the base class they care
about and can log ``str(exc)`` safely.

    CallMinerAssetsError
    ├── ConfigError                 missing/inconsistent settings, found at start
    ├── APIError                    anything that went wrong talking to an API
    │   ├── TransportError          connection dropped, timeout (retried, then raised)
    │   ├── PollTimeoutError        a Semarize run / bulk export still not finished in time
    │   ├── ExportFailed            a Bulk Export execution ended Failed (CallMiner's message)
    │   └── HTTPStatusError         a response with an error status
    │       ├── AuthError           401/403, or invalid_client (never retried)
    │       ├── RateLimitError      429 after the retry budget is spent
    │       ├── ServerError         5xx after the retry budget is spent
    │       └── RequestRejected     other 4xx (400/404/422...), not retried
    └── DataError                   a payload that is not what the contract says
"""

from __future__ import annotations


class CallMinerAssetsError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(CallMinerAssetsError):
    """Settings are missing or inconsistent (raised before any request is sent)."""


class APIError(CallMinerAssetsError):
    """A request to CallMiner or Semarize failed; ``request`` is ``"METHOD /path"``."""

    def __init__(self, message: str, *, request: str) -> None:
        super().__init__(f"{message} ({request})")
        self.request = request


class TransportError(APIError):
    """The connection failed or timed out, after the retry budget was spent."""


class PollTimeoutError(APIError):
    """A run was still queued/running when the poll timeout ran out (re-sending is free)."""


class ExportFailed(APIError):
    """A Bulk Export execution ended ``Failed``; the job is kept on CallMiner to investigate."""


class HTTPStatusError(APIError):
    """The API answered with an error status."""

    def __init__(self, message: str, *, request: str, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}: {message}", request=request)
        self.status_code = status_code


class AuthError(HTTPStatusError):
    """Credentials refused (``invalid_client``) or a token rejected twice. Never retried."""


class RateLimitError(HTTPStatusError):
    """Still rate limited (429) after the retry budget was spent."""


class ServerError(HTTPStatusError):
    """Still failing with 5xx after the retry budget was spent."""


class RequestRejected(HTTPStatusError):
    """A 4xx other than 401/429: the request itself is wrong; retrying cannot help."""


class OriginConflict(CallMinerAssetsError):
    """A run would write rows of one ``origin`` into days holding rows of another.

    Raised before any request, so sandbox and live data never mix silently;
    ``WAREHOUSE_REPLACE_ORIGIN=true`` replaces those days instead.
    """


class DataError(CallMinerAssetsError):
    """A response body does not have the shape the contract promises."""
