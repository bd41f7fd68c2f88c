"""The JSONL history of a scenario: typed records, a flushing writer, a reader, collection."""

from harness.history.records import (
    ApiRequest,
    Effect,
    End,
    Fault,
    History,
    Job,
    JobEffect,
    JobEvent,
    Meta,
    Observation,
    Record,
    Submit,
    record_from_dict,
)
from harness.history.store import HistoryWriter, read_history

__all__ = [
    "ApiRequest",
    "Effect",
    "End",
    "Fault",
    "History",
    "HistoryWriter",
    "Job",
    "JobEffect",
    "JobEvent",
    "Meta",
    "Observation",
    "Record",
    "Submit",
    "read_history",
    "record_from_dict",
]
