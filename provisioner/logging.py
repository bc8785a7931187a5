"""Structured logging: one event name per line with keyword fields, and no secret in any of them.

Every log record (ours through structlog, third-party through the stdlib bridge) passes the
redactor, which masks registered secret values wherever they appear and drops fields whose
names say they hold credentials.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, Final

import structlog

MASK: Final = "***"
_SENSITIVE_FIELD: Final = re.compile(
    r"(authorization|passphrase|password|secret|token|api_key|apikey|credential)", re.IGNORECASE
)
# Bearer tokens, our own key format and AWS request signing (SigV4 headers and presigned
# query strings, access key ids), even if never registered. Group 1, if any, is kept.
_TOKEN_PATTERNS: Final = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"mdp_[A-Za-z0-9_-]{20,}"),
    re.compile(r"(?i)(\bCredential=)[^,\s&\"'<>]+"),
    re.compile(r"(?i)(\bSignature=)[^,\s&\"'<>]+"),
    re.compile(r"(?i)(\bX-Amz-(?:Credential|Signature|Security-Token)(?:=|%3D))[^,\s&\"'<>]+"),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
)
# An HTML document (an emulator's or proxy's error page) in an error text.
_HTML_DOCUMENT: Final = re.compile(r"(?is)<(?:!doctype\s+html|html)\b.*?(?:</html>|\Z)")
_HTML_TITLE: Final = re.compile(r"(?is)<title>(.*?)</title>")
# Error reasons are shown in the API; longer ones are cut.
MAX_REASON_CHARS: Final = 2000


class SecretRedactor:
    """Masks known secret values. Thread-safe; secrets are registered once at start-up."""

    def __init__(self, secrets: Iterable[str | None] = (), *, min_length: int = 6) -> None:
        # The service's log redactor skips very short values, which would mask ordinary
        # words; an engine masking its own credentials in CLI output masks every one.
        self._min_length = min_length
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self.register(secrets)

    def register(self, values: Iterable[str | None]) -> None:
        with self._lock:
            known = set(self._secrets)
            known.update(value for value in values if value and len(value) >= self._min_length)
            # Longest first, so a secret that contains another is masked whole.
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def redact_text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _TOKEN_PATTERNS:
            text = pattern.sub(
                lambda match: (match.group(1) if match.groups() else "") + MASK, text
            )
        return text

    def reason(self, text: str) -> str:
        """An error reason fit to record and show: redacted, without HTML pages, bounded."""
        text = _HTML_DOCUMENT.sub(_html_summary, self.redact_text(text))
        if len(text) > MAX_REASON_CHARS:
            text = text[: MAX_REASON_CHARS - 1] + "…"
        return text

    def redact_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            return {
                key: MASK if _SENSITIVE_FIELD.search(str(key)) else self.redact_value(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.redact_value(item) for item in value]
        return value

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if key != "event" and _SENSITIVE_FIELD.search(key):
                event_dict[key] = MASK
            else:
                event_dict[key] = self.redact_value(event_dict[key])
        return event_dict


def _html_summary(match: re.Match[str]) -> str:
    title = _HTML_TITLE.search(match.group(0))
    heading = " ".join(title.group(1).split())[:120] if title else ""
    return f"(an HTML error page{': ' + heading if heading else ''})"


redactor = SecretRedactor()


# Control characters (C0 but tab and line feed, DEL, C1) and bidirectional controls reach a
# terminal raw from a console line (a request's path is the client's to choose): escaped.
# JSON lines escape them already (json.dumps keeps to ASCII).
_UNPRINTABLE: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def escape_control_characters(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str) and _UNPRINTABLE.search(value):
            event_dict[key] = _UNPRINTABLE.sub(_escape, value)
    return event_dict


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    rendering = [renderer] if json else [escape_control_characters, renderer]
    structlog.configure(
        # A line below its logger's level is dropped before any processor runs (the audit
        # middleware's line per request costs nothing at WARNING).
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The emulator and HTTP client libraries log every request at INFO.
    for noisy in ("werkzeug", "moto", "botocore", "boto3", "urllib3", "httpx", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # moto's Step Functions interpreter logs every Fail state at ERROR; a file failing its
    # validation is an outcome of the pipeline, recorded in its status, not a service error.
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
