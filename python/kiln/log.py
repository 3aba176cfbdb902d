"""The `kiln` logger; KILN_LOGS=info|debug (or a comma list of topics) turns it on."""
import logging
import os

logger = logging.getLogger("kiln")
_seen: set = set()


def _configure() -> None:
    spec = os.environ.get("KILN_LOGS", "").strip().lower()
    if not spec or logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[kiln %(levelname)s] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if "debug" in spec else logging.INFO)


def log_once(key: str, message: str, level: int = logging.WARNING) -> None:
    """Logs a message the first time its key is seen in this process."""
    if key in _seen:
        return
    _seen.add(key)
    logger.log(level, message)


_configure()
