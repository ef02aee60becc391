"""OTLP log records as the Rotel collector prints them (`--debug-log logs
--debug-log-verbosity detailed`): the parser and the parsed `LogRecord`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass
class LogRecord:
    resource: dict[str, Any]
    scope: str
    timestamp: int | None
    observed_timestamp: int | None
    event_name: str | None
    body: Any
    attributes: dict[str, Any]
    trace_id: str
    span_id: str
    flags: int | None

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attributes.get(key, default)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ATTR = re.compile(r"^\s*-> ([^:]+): (.*)$")
_TYPED = re.compile(r"^(Str|Int|Bool|Double|Bytes|Slice|Map|Empty)\((.*)\)$", re.S)
_ITEM_START = re.compile(r"(Str|Int|Bool|Double|Bytes|Slice|Map|Empty)\(")


def parse_value(text: str) -> Any:
    """Rotel's rendering of an OTLP AnyValue -> Python (str, int, bool, float, list)."""
    m = _TYPED.match(text)
    if not m:
        return text
    kind, inner = m.groups()
    if kind == "Str":
        return inner
    if kind == "Int":
        return int(inner)
    if kind == "Bool":
        return inner == "true"
    if kind == "Double":
        return float(inner)
    if kind == "Slice":
        return _parse_slice(inner)
    return text  # Bytes / Map / Empty: keep the raw rendering


def _parse_slice(inner: str) -> list:
    items: list = []
    pos = 0
    while pos < len(inner):
        m = _ITEM_START.match(inner, pos)
        if not m:
            raise ValueError(f"cannot parse slice item at {inner[pos:]!r}")
        # The item ends at the first ')' followed by ', <Type>(' or by the end of the slice.
        search = m.end()
        while True:
            close = inner.find(")", search)
            if close < 0:
                raise ValueError(f"unterminated slice item in {inner!r}")
            rest = inner[close + 1:]
            if rest == "" or (rest.startswith(", ") and _ITEM_START.match(rest, 2)):
                break
            search = close + 1
        items.append(parse_value(inner[pos:close + 1]))
        pos = close + 1
        if inner.startswith(", ", pos):
            pos += 2
    return items


_LINE_KEYS = (
    "ResourceLog #",
    "Resource SchemaURL:",
    "Resource attributes:",
    "ScopeLogs #",
    "ScopeLogs SchemaURL:",
    "InstrumentationScope",
    "LogRecord #",
    "ObservedTimestamp:",
    "Timestamp:",
    "SeverityText:",
    "SeverityNumber:",
    "EventName:",
    "Body:",
    "Attributes:",
    "Flags:",
    "Dropped",
)
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def parse_rotel_log(text: str) -> list[LogRecord]:
    """Parse `rotel-agent ... --debug-log logs --debug-log-verbosity detailed` stdout."""
    records: list[LogRecord] = []
    resource: dict[str, Any] = {}
    scope = ""
    section = None  # "resource" | "record"
    cur: dict | None = None
    last: tuple[dict, str] | None = None  # (dict, key) of the last multi-line-capable value

    def finish() -> None:
        nonlocal cur
        if cur is None:
            return
        records.append(
            LogRecord(
                resource={k: parse_value(v) for k, v in resource.items()},
                scope=scope,
                timestamp=cur.get("timestamp"),
                observed_timestamp=cur.get("observed"),
                event_name=cur.get("event_name"),
                body=parse_value(cur["body"]) if "body" in cur else None,
                attributes={k: parse_value(v) for k, v in cur["attrs"].items()},
                trace_id=cur.get("trace_id", ""),
                span_id=cur.get("span_id", ""),
                flags=cur.get("flags"),
            )
        )
        cur = None

    for raw_line in text.splitlines():
        line = _ANSI.sub("", raw_line)
        stripped = line.strip()
        if _LOG_LINE.match(stripped):
            last = None
            continue
        if line.startswith("ResourceLog #"):
            finish()
            resource, scope, section, last = {}, "", None, None
            continue
        if line.startswith("Resource attributes:"):
            section, last = "resource", None
            continue
        if line.startswith("ScopeLogs #"):
            finish()
            section, last = None, None
            continue
        if line.startswith("InstrumentationScope"):
            scope = line[len("InstrumentationScope"):].strip()
            continue
        if line.startswith("LogRecord #"):
            finish()
            cur = {"attrs": {}}
            section, last = "record", None
            continue
        m = _ATTR.match(line)
        if m and section in ("resource", "record") and (section == "resource" or cur is not None):
            target = resource if section == "resource" else cur["attrs"]
            target[m.group(1)] = m.group(2)
            last = (target, m.group(1))
            continue
        if cur is not None:
            if stripped.startswith("Trace ID"):
                cur["trace_id"] = stripped.split(":", 1)[1].strip()
                last = None
                continue
            if stripped.startswith("Span ID"):
                cur["span_id"] = stripped.split(":", 1)[1].strip()
                last = None
                continue
            if line.startswith("Timestamp:"):
                cur["timestamp"] = int(line.split(":", 1)[1].strip() or 0)
                continue
            if line.startswith("ObservedTimestamp:"):
                cur["observed"] = int(line.split(":", 1)[1].strip() or 0)
                continue
            if line.startswith("EventName:"):
                cur["event_name"] = line.split(":", 1)[1].strip()
                continue
            if line.startswith("Body:"):
                cur["body"] = line.split(":", 1)[1].strip()
                last = (cur, "body")
                continue
            if line.startswith("Flags:"):
                cur["flags"] = int(line.split(":", 1)[1].strip() or 0)
                last = None
                continue
        if any(line.startswith(k) for k in _LINE_KEYS):
            last = None
            continue
        if last is not None:
            # continuation of a string value that contained a newline
            target, key = last
            target[key] += "\n" + line
    finish()
    return records


def same_value(shipped: Any, original: Any) -> bool:
    """Whether a value shipped through a log agent is the original: JSON numbers come back from
    an agent as doubles; everything else (booleans included, by type) must be equal."""
    if isinstance(original, bool) or isinstance(shipped, bool):
        return shipped == original and type(shipped) is type(original)
    if isinstance(original, int) and isinstance(shipped, (int, float)):
        return float(shipped) == float(original)
    return shipped == original
