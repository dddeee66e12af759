"""Python client for the streamrec HTTP API: ``StreamrecClient`` and ``AsyncStreamrecClient``."""

from streamrec_client.client import (
    ApiError,
    AsyncStreamrecClient,
    RetryPolicy,
    StreamrecClient,
    retry_after_s,
    with_event_ids,
)
from streamrec_client.models import (
    EventsAccepted,
    OrderAccepted,
    ProductsAccepted,
    Recommendations,
    TrainAccepted,
    TrainJob,
    UserAccepted,
    UserProfile,
)

__all__ = [
    "ApiError",
    "AsyncStreamrecClient",
    "EventsAccepted",
    "OrderAccepted",
    "ProductsAccepted",
    "Recommendations",
    "RetryPolicy",
    "StreamrecClient",
    "TrainAccepted",
    "TrainJob",
    "UserAccepted",
    "UserProfile",
    "retry_after_s",
    "with_event_ids",
]
