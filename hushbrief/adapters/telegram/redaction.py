"""Keep python-telegram-bot's and httpx's log records free of content and of the token.

PTB logs generously for debugging: at DEBUG every API call with its parameters
and every response (message text, names), and at CRITICAL the raw update it
failed to parse ("Received data was …"). httpx logs every request URL at INFO,
and a Bot API URL carries the bot token. None of that may reach the operator's
logs (DESIGN.md invariant 1), whatever level they run at.

Filters on a logger only see records created on that very logger, not on its
children, so ``install`` attaches one to each of PTB's loggers. A kept record
is rewritten in place: numbers survive, every other argument is reduced to its
type, and an exception is reduced to its class name (Telegram's error
descriptions can quote the text they rejected).
"""

from __future__ import annotations

import logging

_PTB_ROOTS = ("telegram",)
_KNOWN_PTB_LOGGERS = (
    "telegram", "telegram.Bot", "telegram.ext", "telegram.ext.ExtBot",
    "telegram.ext.Application", "telegram.ext.Updater", "telegram.ext.JobQueue",
    "telegram.ext.ConversationHandler", "telegram.ext.AIORateLimiter",
    "telegram.request.BaseRequest", "telegram.request.HTTPXRequest",
)


def _scrub_arg(arg: object) -> object:
    if isinstance(arg, bool | int | float):
        return arg
    return f"<{type(arg).__name__}>"


class ContentFreeRecords(logging.Filter):
    """Drop PTB's DEBUG records and strip arguments and exception text from the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return False
        template = record.msg if isinstance(record.msg, str) else f"<{type(record.msg).__name__}>"
        message = template
        if isinstance(record.args, tuple) and record.args:
            try:
                message = template % tuple(_scrub_arg(a) for a in record.args)
            except (TypeError, ValueError):
                message = template  # a %d that received "<str>": keep the bare template
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            message += f" type={type(exc).__name__}"
        record.msg, record.args = message, None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


class TokenRedaction(logging.Filter):
    """Replace the bot token wherever a record (an httpx request URL) would show it."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._token:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        if self._token in message:
            record.msg, record.args = message.replace(self._token, "<token>"), None
        return True


_CONTENT_FREE = ContentFreeRecords()


def install_ptb_filter() -> None:
    """Attach the content filter to every PTB logger (idempotent; it stays installed)."""
    names = set(_KNOWN_PTB_LOGGERS)
    names.update(name for name, logger in logging.Logger.manager.loggerDict.items()
                 if isinstance(logger, logging.Logger)
                 and name.split(".", 1)[0] in _PTB_ROOTS)
    for name in names:
        logger = logging.getLogger(name)
        if _CONTENT_FREE not in logger.filters:
            logger.addFilter(_CONTENT_FREE)


def install_token_filter(token: str) -> TokenRedaction:
    """Redact ``token`` from httpx's request log; returns the filter for ``remove``."""
    redaction = TokenRedaction(token)
    logging.getLogger("httpx").addFilter(redaction)
    return redaction


def remove_token_filter(redaction: TokenRedaction) -> None:
    logging.getLogger("httpx").removeFilter(redaction)
