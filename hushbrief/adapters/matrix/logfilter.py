"""Keep matrix-nio's (and peewee's) log records free of content and identifiers.

What nio logs, checked against matrix-nio 0.26:

* DEBUG: every response body it validates (``Validating response schema %r: %s``
  with the whole parsed JSON: message bodies of unencrypted rooms, display names),
  HTTP headers, key-query payloads. peewee, under nio's store, logs every SQL
  statement with its parameters at DEBUG.
* INFO/WARNING/ERROR: f-strings that embed room IDs, user IDs, device IDs and
  session IDs ("New joined room !…", "Changing power level for user @…"), and
  ``Error validating event: <jsonschema error>``, whose text includes the whole
  offending event — content included.

None of that may reach the operator's logs (DESIGN.md invariant 1), whatever level
they run at. Because nio formats most messages with f-strings, a record's template
cannot be told apart from its arguments, so the filter keeps only what is known to
be safe: the logger, the level and the source location (``nio record withheld at
rooms.py:373``) — enough to look the line up in nio's source — plus records whose
arguments are all numbers (nio's ``Got 429 response (ratelimited), sleeping for
%dms``). Exceptions are reduced to their class name. DEBUG records are dropped.

A filter on a logger sees only records created on that very logger, so one is
attached to each of nio's loggers (and peewee's) by name.
"""

from __future__ import annotations

import logging

_ROOTS = ("nio", "peewee")
_KNOWN = (
    "nio", "nio.responses", "nio.http", "nio.rooms", "nio.crypto", "nio.crypto.log",
    "nio.crypto.sas", "nio.events", "nio.events.misc", "nio.events.presence", "nio.store",
    "nio.store.log", "nio.client", "nio.client.async_client", "nio.client.base_client",
    "nio.client.http_client", "peewee",
)


class ContentFreeNioRecords(logging.Filter):
    """Drop DEBUG records; reduce the rest to logger, level, location and numbers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        numeric = bool(args) and all(
            isinstance(a, int | float) and not isinstance(a, bool) for a in args)
        if numeric and isinstance(record.msg, str):
            try:
                message = record.msg % args
            except (TypeError, ValueError):
                message = _withheld(record)
        else:
            message = _withheld(record)
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            message += f" type={type(exc).__name__}"
        record.msg, record.args = message, None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _withheld(record: logging.LogRecord) -> str:
    return f"nio record withheld at {record.filename}:{record.lineno}"


_FILTER = ContentFreeNioRecords()


def install_nio_filter() -> None:
    """Attach the filter to every nio and peewee logger (idempotent; it stays installed)."""
    names = set(_KNOWN)
    names.update(name for name, logger in logging.Logger.manager.loggerDict.items()
                 if isinstance(logger, logging.Logger) and name.split(".", 1)[0] in _ROOTS)
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
