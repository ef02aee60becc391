"""A real ClickHouse server (Debian `clickhouse-server`, `make sysdeps`) on free ports."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from .core import HarnessError, free_port, http_get
from .processes import Process, log_tail


def clickhouse_server_bin() -> Path:
    import shutil

    found = shutil.which("clickhouse-server") or (
        "/usr/sbin/clickhouse-server" if os.access("/usr/sbin/clickhouse-server", os.X_OK) else None
    )
    if not found:
        raise HarnessError("clickhouse-server not found: `make sysdeps` installs it (Debian clickhouse-server)")
    return Path(found)


class ClickHouse(Process):
    """A real ClickHouse server on 127.0.0.1 with free ports and its data in `workdir`; ready
    when its HTTP /ping answers."""

    name = "clickhouse-server"
    start_timeout = 60.0
    poll_interval = 0.1
    stop_timeout = 20.0

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir / "stdout.log", cwd=workdir)
        self.dir = workdir
        self.http_port = free_port()
        self.tcp_port = free_port()
        self.config_path = workdir / "config.xml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _write_config(self) -> Path:
        d = self.dir
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "users.xml").write_text(
            """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
"""
        )
        config = d / "config.xml"
        config.write_text(
            f"""<?xml version="1.0"?>
<yandex>
  <logger><level>information</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{self.http_port}</http_port>
  <tcp_port>{self.tcp_port}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
</yandex>
"""
        )
        return config

    def spawn(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self._write_config()
        return super().spawn()

    def command(self) -> list[str]:
        return [str(clickhouse_server_bin()), f"--config-file={self.config_path}"]

    def is_ready(self) -> bool:
        try:
            return http_get(self.url + "/ping", timeout=1.0) == (200, "Ok.\n")
        except OSError:
            return False

    def waiting_for(self) -> str:
        return f"clickhouse on {self.http_port}"

    def log_tails(self) -> str:
        return f"{log_tail(self.log_path)}\n{log_tail(self.dir / 'server.err.log')}"

    def query(self, sql: str, **settings: str) -> str:
        """Runs one statement over HTTP; raises HarnessError with ClickHouse's message if it fails."""
        from urllib.parse import urlencode

        url = self.url + "/" + (("?" + urlencode(settings)) if settings else "")
        req = urllib.request.Request(url, data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as e:
            raise HarnessError(f"clickhouse refused {sql[:200]!r}: {e.code} {e.read().decode(errors='replace')}")
