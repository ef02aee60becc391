#!/usr/bin/env python3
"""meshaudit events in ClickHouse: create the table, answer an auditor, enforce retention.

Talks to ClickHouse's HTTP interface (default http://127.0.0.1:8123, or $CLICKHOUSE_URL) with
the Python standard library only.

  run.py schema                        create meshaudit.trail and meshaudit.events from schema.sql
  run.py insert-path                   the `collector.path` for meshaudit's JSON lines
  run.py query --service checkout --from 2025-01-01T00:00:00Z --to 2025-02-01T00:00:00Z
                                       who called that service in that time range
  run.py soc2 denied-requests --from 2026-10-01T00:00:00Z --to 2027-01-01T00:00:00Z
                                       one of the SOC 2 questions in soc2/ (README.md)
  run.py retention --days 365          drop daily partitions older than that (servers < 19.6)

`schema` applies schema.sql as written on ClickHouse 19.6 and later, where its TTL clause
deletes old rows. Older servers (Debian's 18.16, for one) do not know TTL: the table is then
created without the clause, and `retention` must run daily (cron, a Kubernetes CronJob) to drop
the partitions past the retention period.

`query` fills the `{name:Type}` placeholders of auditor-query.sql itself (quoted, escaped), so
it works on servers that predate ClickHouse's own query parameters; on newer servers the file
also runs as is with `clickhouse-client --param_service=... --param_since=... --param_until=...`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "schema.sql"
AUDITOR_QUERY = HERE / "auditor-query.sql"
SOC2 = HERE / "soc2"
DATABASE = "meshaudit"
TRAIL = "trail"
TABLE = "events"
# What meshaudit POSTs its JSON lines to (set as `collector.path`, with `"format": "json"`): the
# trail, each line one CSV field (the delimiter 0x01 is in no JSON line), kept as written.
INSERT_PATH = (
    "/?query=" + urllib.parse.quote(f"INSERT INTO {DATABASE}.{TRAIL} FORMAT CSV", safe="")
    + "&format_csv_delimiter=%01"
)
TTL_SINCE = (19, 6)


class ClickHouseError(RuntimeError):
    pass


class Server:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def run(self, sql: str, **settings: str) -> str:
        query = ("?" + urllib.parse.urlencode(settings)) if settings else ""
        req = urllib.request.Request(self.url + "/" + query, data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as e:
            raise ClickHouseError(e.read().decode(errors="replace").strip()) from None

    def version(self) -> tuple[int, ...]:
        text = self.run("SELECT version()").strip()
        return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


# ---------------------------------------------------------------------------------------------
# SQL files
# ---------------------------------------------------------------------------------------------


def statements(sql: str) -> list[str]:
    """The statements of a .sql file: comment lines dropped, split at `;` ending a line."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    out, cur = [], []
    for line in lines:
        cur.append(line)
        if line.rstrip().endswith(";"):
            text = "\n".join(cur).strip().rstrip(";").strip()
            if text:
                out.append(text)
            cur = []
    rest = "\n".join(cur).strip()
    if rest:
        out.append(rest)
    return out


def without_ttl(statement: str) -> str:
    """The statement without its table-level `TTL ...` clause (the last clause of schema.sql)."""
    return re.sub(r"\n\s*TTL\s[^\n]*$", "", statement)


_PLACEHOLDER = re.compile(r"\{(\w+):(\w+)\}")


def sql_literal(value: str, type_name: str) -> str:
    if type_name == "String":
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if re.fullmatch(r"U?Int\d+", type_name):
        if not re.fullmatch(r"-?\d+", value):
            raise ValueError(f"{value!r} is not a {type_name}")
        return value
    raise ValueError(f"unsupported parameter type {type_name}")


def render(sql: str, params: dict[str, str]) -> str:
    """Fills `{name:Type}` placeholders with quoted literals."""

    def sub(m: re.Match) -> str:
        name, type_name = m.groups()
        if name not in params:
            raise KeyError(f"missing parameter {name!r}")
        return sql_literal(params[name], type_name)

    return _PLACEHOLDER.sub(sub, sql)


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def cmd_schema(server: Server, args) -> int:
    version = server.version()
    ttl = version >= TTL_SINCE
    for stmt in statements(SCHEMA.read_text()):
        if not ttl:
            stmt = without_ttl(stmt)
        server.run(stmt)
    shown = ".".join(map(str, version))
    print(f"created {DATABASE}.{TRAIL} and {DATABASE}.{TABLE} on ClickHouse {shown}")
    if ttl:
        print("retention: the table's TTL deletes rows past the retention period")
    else:
        print(
            f"retention: ClickHouse {shown} has no TTL (19.6 and later have it); the tables were "
            f"created without it: run `run.py retention --days N` daily to drop old partitions"
        )
    return 0


def cmd_insert_path(server: Server, args) -> int:
    print(INSERT_PATH)
    return 0


def cmd_query(server: Server, args) -> int:
    sql = render(
        "\n".join(statements(AUDITOR_QUERY.read_text())),
        {"service": args.service, "since": getattr(args, "from"), "until": args.to},
    )
    fmt = "JSONEachRow" if args.format == "json" else "PrettyCompactNoEscapes"
    out = server.run(f"{sql}\nFORMAT {fmt}", output_format_json_quote_64bit_integers="0")
    sys.stdout.write(out)
    if args.format == "table" and not out.strip():
        print(f"nobody called {args.service} between {getattr(args, 'from')} and {args.to}")
    return 0


def cmd_soc2(server: Server, args) -> int:
    params = {"since": getattr(args, "from"), "until": args.to}
    if args.baseline_from:
        params["baseline_since"] = args.baseline_from
    if args.prefix:
        params["prefix"] = args.prefix
    sql = render("\n".join(statements((SOC2 / f"{args.question}.sql").read_text())), params)
    fmt = "JSONEachRow" if args.format == "json" else "PrettyCompactNoEscapes"
    sys.stdout.write(server.run(f"{sql}\nFORMAT {fmt}", output_format_json_quote_64bit_integers="0"))
    return 0


def cmd_retention(server: Server, args) -> int:
    rows = server.run(
        "SELECT DISTINCT table, partition_id, toString(max_date) FROM system.parts "
        f"WHERE database = '{DATABASE}' AND table IN ('{TRAIL}', '{TABLE}') AND active "
        f"AND max_date < today() - {int(args.days)} ORDER BY table, partition_id FORMAT TabSeparated"
    )
    dropped = 0
    for line in rows.splitlines():
        table, partition_id, day = line.split("\t")
        server.run(f"ALTER TABLE {DATABASE}.{table} DROP PARTITION ID '{partition_id}'")
        print(f"dropped partition {partition_id} of {table} (events of {day})")
        dropped += 1
    print(f"retention {args.days} days: dropped {dropped} partition(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("CLICKHOUSE_URL", "http://127.0.0.1:8123"),
                        help="ClickHouse HTTP interface (default $CLICKHOUSE_URL or http://127.0.0.1:8123)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("schema", help="create the database and table from schema.sql")
    sub.add_parser("insert-path", help="print the collector.path meshaudit posts JSON lines to")
    q = sub.add_parser("query", help="who called a service in a time range (auditor-query.sql)")
    q.add_argument("--service", required=True, help="service.name of the called workload")
    q.add_argument("--from", required=True, help="start, inclusive (RFC 3339, e.g. 2025-01-01T00:00:00Z)")
    q.add_argument("--to", required=True, help="end, exclusive (RFC 3339)")
    q.add_argument("--format", choices=["table", "json"], default="table")
    questions = sorted(p.stem for p in SOC2.glob("*.sql"))
    s2 = sub.add_parser("soc2", help="a SOC 2 question from soc2/ (README.md)")
    s2.add_argument("question", choices=questions)
    s2.add_argument("--from", required=True, help="start, inclusive (RFC 3339)")
    s2.add_argument("--to", required=True, help="end, exclusive (RFC 3339)")
    s2.add_argument("--baseline-from", help="new-callers: the baseline's start (it ends at --from)")
    s2.add_argument("--prefix", help="privileged-routes: the path prefix, e.g. /admin/")
    s2.add_argument("--format", choices=["table", "json"], default="table")
    r = sub.add_parser("retention", help="drop partitions older than --days (for servers without TTL)")
    r.add_argument("--days", type=int, default=365)
    args = parser.parse_args(argv)
    server = Server(args.url)
    commands = {"schema": cmd_schema, "insert-path": cmd_insert_path, "query": cmd_query,
                "soc2": cmd_soc2, "retention": cmd_retention}
    try:
        return commands[args.command](server, args)
    except (ClickHouseError, urllib.error.URLError, KeyError, ValueError) as e:
        print(f"run.py {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
