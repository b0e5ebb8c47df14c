"""Access-log lines without query strings: links carry secrets (subscription confirmation and
unsubscribe tokens), and a log is no place for them."""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"


class RedactQueries(logging.Filter):
    """Replace the query of the request path in uvicorn's access-log arguments with '?…'."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, sep, _ = args[2].partition("?")
            if sep:
                record.args = (*args[:2], f"{path}?…", *args[3:])
        return True


def redact_queries() -> None:
    """Install the filter once; it survives uvicorn's own logging configuration."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactQueries) for f in logger.filters):
        logger.addFilter(RedactQueries())
