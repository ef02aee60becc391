"""End-to-end proof of the integrity chain (docs/integrity.md): trails written by real Envoy
running the filter, stored where an auditor would read them, checked by `meshaudit verify`.

Real parts: Envoy 1.40 with the filter (as HTTP filter and as access logger), a signing key made
by `meshaudit keygen` and given to the Wasm VM through its environment, the test kit's JSON-lines
sink (what it received, byte for byte, is the stored trail), the Rotel collector forwarding
OTLP/HTTP to a recording server (the export requests as Rotel re-encodes them are the trail), a
ClickHouse server (Debian 18.16) with the example schema, and Envoy's own log as the witness.

Each tampering is applied to a copy of a stored trail (or to the ClickHouse table), and verify
must report exactly that violation, at that stream and sequence, and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import testkit
from testkit import free_port, wait_for

FAST = {
    "flush_interval_ms": 100,
    "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 500},
    "request_headers": ["content-type", "user-agent"],
}
# The shortest checkpoint interval there is, and the witness in Envoy's log.
INTEGRITY = {"checkpoint_interval_ms": 1000, "witness": "log"}
JSON_CONFIG = {
    **FAST,
    "format": "json",
    "collector": {"authority": testkit.JSON_SINK_AUTHORITY},
    "integrity": INTEGRITY,
}
KEY_ENV = "MESHAUDIT_SIGNING_KEY"
WITNESS_MARK = "meshaudit-checkpoint "
CLICKHOUSE_EXAMPLE = testkit.REPO / "examples" / "clickhouse"

SEQ, STREAM, NAME = "meshaudit.sequence", "meshaudit.stream.id", "event_name"
HTTP, CHECKPOINT, GAP = "meshaudit.http", "meshaudit.checkpoint", "meshaudit.gap"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


@dataclass
class Keys:
    private: str  # the PEM: only ever written into the VM's environment, never printed
    public: Path
    other_public: Path


@pytest.fixture(scope="module")
def keys(cli, tmp_path_factory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    for name in ("signing", "other"):
        proc = subprocess.run([str(cli), "keygen", "--out", str(d / name)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert (d / f"{name}.key").stat().st_mode & 0o077 == 0, "the private key is its owner's only"
    private = (d / "signing.key").read_text()
    assert "PRIVATE KEY" in private
    assert private not in proc.stdout + proc.stderr
    return Keys(private=private, public=d / "signing.pub", other_public=d / "other.pub")


def verify(cli: Path, *args, allowed=(0, 1)) -> dict:
    """`meshaudit verify --json ARGS`: the report, with its exit code under "exit"."""
    proc = subprocess.run([str(cli), "verify", "--json", *map(str, args)], capture_output=True, text=True, timeout=120)
    assert proc.returncode in allowed, f"verify exited {proc.returncode}: {proc.stderr}{proc.stdout[:2000]}"
    report = json.loads(proc.stdout)
    report["exit"] = proc.returncode
    assert (proc.returncode == 0) == report["clean"]
    return report


def found(report: dict) -> list[tuple]:
    return sorted((v["kind"], v["stream_id"], v["first_sequence"], v["last_sequence"]) for v in report["violations"])


def compact(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def parse(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines]


def witness_lines(log_text: str) -> list[dict]:
    return [json.loads(line.split(WITNESS_MARK, 1)[1]) for line in log_text.splitlines() if WITNESS_MARK in line]


def sealed(objs: list[dict], stream: str | None = None) -> bool:
    """Every stream's (or one stream's) last event is a checkpoint: nothing unsealed."""
    streams = {o[STREAM] for o in objs} if stream is None else {stream}
    if not streams or not objs:
        return False
    for s in streams:
        mine = [o for o in objs if o[STREAM] == s]
        if not mine or max(mine, key=lambda o: o[SEQ])[NAME] != CHECKPOINT:
            return False
    return True


stats = testkit.meshaudit_stats
get = testkit.meshaudit_stat


def wait_stats(envoy: testkit.Envoy, predicate, timeout: float = 20.0, what: str = "meshaudit stats"):
    return testkit.wait_meshaudit_stats(envoy, predicate, timeout, what)


def json_envoy(workdir: Path, wasm: Path, app_port: int, collector_port: int, keys: Keys, config: dict,
               access_log: bool = False, extra_args=()) -> testkit.Envoy:
    """envoy/edge.yaml + meshaudit (JSON lines, signed, witness in the log), not started."""
    admin, port = free_port(), free_port()
    rendered = testkit.render_envoy(
        testkit.ENVOY_DIR / "edge.yaml", workdir, admin_port=admin, listener_ports={"edge_http": port},
        cluster_overrides={"app": app_port, "meshaudit_collector": collector_port}, wasm=wasm,
        plugin_config_overrides={**config, "mode": "access_log" if access_log else "http"},
        vm_env={KEY_ENV: keys.private}, access_log=access_log,
    )
    return testkit.Envoy(rendered, admin, workdir / "envoy.log", listener_ports={"edge_http": port},
                         extra_args=list(extra_args))


def send(envoy: testkit.Envoy, path: str, rid: str) -> None:
    port = next(iter(envoy.listener_ports.values()))
    assert testkit.request(port, path, headers={"x-request-id": rid}).status == 200


def wait_trail(lines_of, envoy: testkit.Envoy, predicate, timeout: float = 20.0, what: str = "the trail") -> list[str]:
    """Polls the store (`lines_of()`) until `predicate(objects)` holds and Envoy's log holds a
    witness line for every checkpoint stored; returns the lines."""
    last: list[str] = []

    def ready():
        nonlocal last
        last = lines_of()
        objs = parse(last)
        if not predicate(objs):
            return None
        checkpoints = sum(o[NAME] == CHECKPOINT for o in objs)
        return last if len(witness_lines(envoy.log_text())) >= checkpoints else None

    return wait_for(ready, timeout, 0.1, lambda: f"{what}: {len(last)} lines, last {last[-2:]}; stats "
                    f"{stats(envoy)}\n{testkit.log_tail(envoy.log_path, 15)}")


@dataclass
class Trail:
    """A stored trail (JSON lines, as received) and the witness (a copy of Envoy's log)."""

    dir: Path
    lines: list[str]
    witness: Path

    @property
    def objs(self) -> list[dict]:
        return parse(self.lines)

    @property
    def stream(self) -> str:
        (s,) = {o[STREAM] for o in self.objs}
        return s

    def seqs(self, name: str) -> list[int]:
        return sorted(o[SEQ] for o in self.objs if o[NAME] == name)

    def write(self, name: str, lines: list[str]) -> Path:
        path = self.dir / f"{name}.jsonl"
        path.write_text("".join(line + "\n" for line in lines))
        return path

    def edit(self, seq: int, change) -> list[str]:
        """The lines with the event at `seq` changed by `change(obj)` (one line, re-written)."""
        out = []
        for line, o in zip(self.lines, self.objs):
            if o[SEQ] == seq:
                change(o)
                line = compact(o)
            out.append(line)
        return out


# ---------------------------------------------------------------------------------------------
# 1. The trail as the JSON-lines sink stored it: clean, then each tampering
# ---------------------------------------------------------------------------------------------

BURST = 8


@pytest.fixture(scope="module", params=["filter", "access_log"])
def trail(request, tmp_path_factory, app, wasm, keys, run_id) -> Trail:
    """Two bursts of requests through Envoy (meshaudit as HTTP filter, or as access logger), each
    sealed by a signed checkpoint; the sink's lines are the stored trail, Envoy's log the
    witness (copied while Envoy still runs: its stop would seal the stream once more)."""
    form = request.param
    workdir = tmp_path_factory.mktemp(f"trail-{form}")
    sink = testkit.JsonLinesSink(workdir / "sink.ndjson").start()
    envoy = json_envoy(workdir, wasm, app.port, sink.port, keys, JSON_CONFIG, access_log=form == "access_log")
    with testkit.running(envoy):
        try:
            for burst in range(2):
                for i in range(BURST):
                    send(envoy, f"/trail/{burst}/{i}", f"{run_id}-{form}-{burst}-{i}")
                want = BURST * (burst + 1)
                lines = wait_trail(sink.lines, envoy,
                                   lambda objs: sum(o[NAME] == HTTP for o in objs) == want and sealed(objs),
                                   what=f"burst {burst} sealed")
            witness = workdir / "witness.log"
            shutil.copy(envoy.log_path, witness)
            assert "PRIVATE KEY" not in witness.read_text(), "the key is never logged"
            yield Trail(workdir, lines, witness)
        finally:
            sink.stop()


def test_clean_trail_verifies_with_its_counts(cli, keys, trail):
    report = verify(cli, "--public-key", keys.public, "--witness", trail.witness, trail.write("clean", trail.lines))
    assert report["exit"] == 0 and report["violations"] == [] and report["keyed"] is True
    (stream,) = report["streams"]
    checkpoints = trail.seqs(CHECKPOINT)
    assert len(trail.seqs(HTTP)) == 2 * BURST, "one event per request"
    assert len(checkpoints) >= 2, "each burst sealed"
    assert stream["stream_id"] == trail.stream
    assert stream["events"] == stream["verified"] == 2 * BURST + len(checkpoints) == len(trail.lines)
    assert stream["checkpoints"] == stream["checkpoints_valid"] == len(checkpoints)
    assert stream["checkpoints_unsigned"] == 0
    assert (stream["gaps"], stream["lost"], stream["duplicates"], stream["unanchored"], stream["unsealed_tail"]) == (0, 0, 0, 0, 0)
    assert stream["last_sequence"] == len(trail.lines) - 1
    # The witness holds every checkpoint the trail holds, signed by the one key.
    assert sorted(w["last_sequence"] + 1 for w in witness_lines(trail.witness.read_text())) == checkpoints


def _swap_sequences(trail: Trail, a: int, b: int) -> list[str]:
    out = []
    for line, o in zip(trail.lines, trail.objs):
        if o[SEQ] in (a, b):
            o[SEQ] = b if o[SEQ] == a else a
            line = compact(o)
        out.append(line)
    return out


TAMPERINGS = ["modified", "deleted", "reordered", "duplicate_different_content", "truncated", "missing_stream",
              "bad_signature", "unknown_key"]


@pytest.mark.parametrize("kind", TAMPERINGS)
def test_tampering_is_reported_exactly(cli, keys, trail, kind):
    http = trail.seqs(HTTP)
    checkpoints = trail.seqs(CHECKPOINT)
    k = http[3]  # an event inside the first burst, not next to a checkpoint
    s = trail.stream
    witness_args = ["--witness", trail.witness]
    key_args = ["--public-key", keys.public]

    def change_path(o):
        o["url.path"] = o["url.path"] + "-changed"

    if kind == "modified":
        lines, expected = trail.edit(k, change_path), [("modified", s, k, k)]
    elif kind == "deleted":
        lines = [line for line, o in zip(trail.lines, trail.objs) if o[SEQ] != k]
        expected = [("deleted", s, k, k)]
    elif kind == "reordered":
        # Reported at each of the two sequences: each holds the event that belongs at the other.
        lines = _swap_sequences(trail, k, k + 1)
        expected = [("reordered", s, k, k), ("reordered", s, k + 1, k + 1)]
    elif kind == "duplicate_different_content":
        (copy,) = [o for o in trail.objs if o[SEQ] == k]
        change_path(copy)
        lines, expected = trail.lines + [compact(copy)], [("duplicate_different_content", s, k, k)]
    elif kind == "truncated":
        # Cut after the first checkpoint: what is left ends sealed and signed; only the witness
        # knows the second checkpoint.
        lines = [line for line, o in zip(trail.lines, trail.objs) if o[SEQ] <= checkpoints[0]]
        alone = verify(cli, *key_args, trail.write("truncated-no-witness", lines))
        assert alone["exit"] == 0, "without the witness a cut after a checkpoint is not detectable"
        # From the first sequence missing to the last checkpoint the witness holds.
        expected = [("truncated", s, checkpoints[0] + 1, checkpoints[-1])]
    elif kind == "missing_stream":
        lines, expected = [], [("missing_stream", s, 0, checkpoints[-1] - 1)]
    elif kind == "bad_signature":
        # A byte of a checkpoint's signature flipped where it is not chained: the witness.
        text = trail.witness.read_text().splitlines()
        first = next(i for i, line in enumerate(text) if WITNESS_MARK in line)
        prefix, body = text[first].split(WITNESS_MARK, 1)
        w = json.loads(body)
        sig = bytearray(bytes.fromhex(w["signature"]))
        sig[10] ^= 0x01
        w["signature"] = sig.hex()
        text[first] = prefix + WITNESS_MARK + compact(w)
        forged = trail.dir / "witness-bad-signature.log"
        forged.write_text("\n".join(text) + "\n")
        witness_args = ["--witness", forged]
        lines, expected = trail.lines, [("bad_signature", s, checkpoints[0], checkpoints[0])]
    elif kind == "unknown_key":
        lines, key_args, witness_args = trail.lines, ["--public-key", keys.other_public], []
        expected = [("unknown_key", s, c, c) for c in checkpoints]
    else:
        raise AssertionError(kind)
    report = verify(cli, *key_args, *witness_args, trail.write(kind, lines))
    assert report["exit"] == 1, report
    assert found(report) == sorted(expected), report["violations"]


def test_a_changed_checkpoint_signature_in_the_trail_is_reported(cli, keys, trail):
    """In the trail the signature is also chained: flipping it breaks the checkpoint's link
    (modified) and its signature (bad_signature), both at the checkpoint's sequence."""
    c = trail.seqs(CHECKPOINT)[0]

    def flip(o):
        sig = bytearray(bytes.fromhex(o["meshaudit.checkpoint.signature"]))
        sig[0] ^= 0x80
        o["meshaudit.checkpoint.signature"] = sig.hex()

    report = verify(cli, "--public-key", keys.public, trail.write("trail-bad-signature", trail.edit(c, flip)))
    assert report["exit"] == 1
    kinds = {v[0] for v in found(report)}
    assert "bad_signature" in kinds and kinds <= {"bad_signature", "modified"}, report["violations"]
    assert {v[2] for v in found(report)} == {c}


# ---------------------------------------------------------------------------------------------
# 2. Loss: a collector outage (buffer full) and drop_oldest overflow verify as reported gaps
# ---------------------------------------------------------------------------------------------

OVERFLOW_N = 40


@pytest.fixture(scope="module", params=["drop_newest", "drop_oldest"])
def gap_trail(request, tmp_path_factory, app, wasm, keys, run_id):
    """The collector is down from the start: the buffer overflows (drop_newest refuses what
    comes, drop_oldest evicts what it holds); once the sink is up on the same port, the held
    events and the gap events go out, and a checkpoint seals them."""
    overflow = request.param
    workdir = tmp_path_factory.mktemp(f"gap-{overflow}")
    port = free_port()
    config = {**JSON_CONFIG, "max_batch_events": 50, "max_batch_bytes": 4096, "max_buffer_bytes": 8192,
              "overflow": overflow}
    envoy = json_envoy(workdir, wasm, app.port, port, keys, config)
    sink = None
    with testkit.running(envoy):
        try:
            for i in range(OVERFLOW_N):
                send(envoy, f"/gap/{i:03d}", f"{run_id}-{overflow}-{i:03d}")
            wait_stats(envoy, lambda st: get(st, "events_captured") == OVERFLOW_N and get(st, "events_dropped") > 0,
                       what="all captured, some dropped")
            sink = testkit.JsonLinesSink(workdir / "sink.ndjson", port=port).start()
            st = wait_stats(envoy, lambda st: get(st, "gap_events") >= 1 and get(st, "buffered_events") == 0,
                            what="held events and gap events delivered")

            def complete(objs):
                gaps = [o[SEQ] for o in objs if o[NAME] == GAP]
                return len(gaps) >= get(st, "gap_events") and sealed(objs)

            lines = wait_trail(sink.lines, envoy, complete, what="the gap events sealed")
            witness = workdir / "witness.log"
            shutil.copy(envoy.log_path, witness)
            yield overflow, Trail(workdir, lines, witness), stats(envoy)
        finally:
            if sink:
                sink.stop()


def test_overflow_verifies_as_reported_gaps(cli, keys, gap_trail):
    overflow, trail, st = gap_trail
    report = verify(cli, "--public-key", keys.public, "--witness", trail.witness, trail.write("gaps", trail.lines))
    assert report["exit"] == 0, report["violations"]
    (stream,) = report["streams"]
    gaps = [o for o in trail.objs if o[NAME] == GAP]
    assert gaps and all(g["meshaudit.gap.reason"] == "buffer_full" for g in gaps)
    assert stream["gaps"] == len({g["log.record.uid"] for g in gaps}) == get(st, "gap_events")
    assert stream["lost"] == get(st, "events_dropped") > 0, "every lost event is reported, no more"
    assert stream["unanchored"] == 0, "whole ranges lost: the chain resumes from each gap's head"
    assert stream["verified"] == stream["events"]
    assert stream["unsealed_tail"] == 0
    held = {o[SEQ] for o in trail.objs}
    lost = {s for g in gaps for s in range(g["meshaudit.gap.first_sequence"], g["meshaudit.gap.last_sequence"] + 1)}
    assert held.isdisjoint(lost) and held | lost == set(range(max(held) + 1)), "each sequence held or reported lost"
    if overflow == "drop_oldest":
        assert 0 in lost, "drop_oldest lost the oldest"


def test_an_event_forged_into_a_reported_loss_is_inserted(cli, keys, gap_trail):
    overflow, trail, _ = gap_trail
    gap = next(o for o in trail.objs if o[NAME] == GAP)
    target = gap["meshaudit.gap.first_sequence"]
    forged = dict(next(o for o in trail.objs if o[NAME] == HTTP))
    forged.update({SEQ: target, "log.record.uid": "f" * 32, "url.path": "/made-up"})
    report = verify(cli, "--public-key", keys.public, trail.write("inserted", trail.lines + [compact(forged)]))
    assert report["exit"] == 1
    assert found(report) == [("inserted", trail.stream, target, target)], report["violations"]


# ---------------------------------------------------------------------------------------------
# 3. OTLP, as a collector forwards it: meshaudit -> Rotel -> a recording OTLP/HTTP server
# ---------------------------------------------------------------------------------------------


def test_otlp_through_rotel_verifies(cli, tmp_path, app, wasm, keys, run_id):
    recorder = testkit.OtlpFileStore(tmp_path / "forwarded.bin")
    n = 6
    with testkit.running(recorder):
        rotel = testkit.ForwardingRotel(tmp_path, recorder.port)
        with testkit.running(rotel):
            admin, port = free_port(), free_port()
            config = testkit.render_envoy(
                testkit.ENVOY_DIR / "edge.yaml", tmp_path, admin_port=admin, listener_ports={"edge_http": port},
                cluster_overrides={"app": app.port, "meshaudit_collector": rotel.http_port}, wasm=wasm,
                plugin_config_overrides={**FAST, "integrity": INTEGRITY}, vm_env={KEY_ENV: keys.private},
            )
            envoy = testkit.Envoy(config, admin, tmp_path / "envoy.log", listener_ports={"edge_http": port})
            with testkit.running(envoy):
                for i in range(n):
                    send(envoy, f"/otlp/{i}", f"{run_id}-otlp-{i}")
                snapshot = tmp_path / "trail.bin"
                last: dict = {}

                def settled():
                    nonlocal last
                    recorder.snapshot(snapshot)
                    last = verify(cli, "--public-key", keys.public, snapshot)
                    streams = last["streams"]
                    return (len(streams) == 1 and streams[0]["checkpoints"] >= 1
                            and streams[0]["unsealed_tail"] == 0
                            and streams[0]["events"] == n + streams[0]["checkpoints"])

                wait_for(settled, 20, 0.2, lambda: f"a sealed trail of {n} events after Rotel; last report {last}")
                witness = tmp_path / "witness.log"
                shutil.copy(envoy.log_path, witness)
    report = verify(cli, "--public-key", keys.public, "--witness", witness, snapshot)
    assert report["exit"] == 0, report["violations"]
    (stream,) = report["streams"]
    assert stream["verified"] == stream["events"] == n + stream["checkpoints"]
    assert stream["checkpoints_valid"] == stream["checkpoints"] >= 1
    assert len(recorder.requests) >= 1 and all(r.path == "/v1/logs" for r in recorder.requests)
    # The same trail, a byte of one record's content changed in the stored protobuf.
    data = bytearray(snapshot.read_bytes())
    at = data.find(f"/otlp/{n // 2}".encode())
    assert at > 0
    data[at + 1] = ord("X")
    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(bytes(data))
    bad = verify(cli, "--public-key", keys.public, tampered)
    assert [v[0] for v in found(bad)] == ["modified"], bad["violations"]


# ---------------------------------------------------------------------------------------------
# 4. A configuration reload (LDS): a new stream, the old one sealed at drain
# ---------------------------------------------------------------------------------------------


def lds_json_envoy(workdir: Path, wasm: Path, app_port: int, collector_port: int, keys: Keys):
    """envoy/edge.yaml (JSON lines, signed) with its listener served from a file (LDS), so the
    plugin configuration can be replaced at run time as a control plane would."""
    envoy = json_envoy(workdir, wasm, app_port, collector_port, keys, JSON_CONFIG, extra_args=["--drain-time-s", "1"])
    boot = yaml.safe_load(envoy.config.read_text())
    listener = boot["static_resources"].pop("listeners")[0]
    lds_dir = workdir / "lds"
    lds_dir.mkdir()

    def publish(overrides: dict) -> None:
        fresh = json.loads(json.dumps(listener))
        for tc in testkit.meshaudit_filters(fresh):
            conf = tc["config"]["configuration"]
            conf["value"] = json.dumps(testkit.deep_merge(json.loads(conf["value"]), overrides))
        fresh["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener"
        tmp = lds_dir / "lds.yaml.tmp"
        tmp.write_text(yaml.safe_dump({"resources": [fresh]}, sort_keys=False))
        os.rename(tmp, lds_dir / "lds.yaml")

    publish({})
    boot["dynamic_resources"] = {"lds_config": {"resource_api_version": "V3", "path_config_source": {
        "path": str(lds_dir / "lds.yaml"), "watched_directory": {"path": str(lds_dir)}}}}
    envoy.config.write_text(yaml.safe_dump(boot, sort_keys=False))
    return envoy, publish


def test_configuration_reload_seals_the_old_stream_and_starts_a_new_one(cli, tmp_path, app, wasm, keys, run_id):
    sink = testkit.JsonLinesSink(tmp_path / "sink.ndjson")
    envoy, publish = lds_json_envoy(tmp_path, wasm, app.port, sink.port, keys)
    with testkit.running(sink), testkit.running(envoy):
        for i in range(4):
            send(envoy, f"/before/{i}", f"{run_id}-before-{i}")
        first = wait_trail(sink.lines, envoy, lambda objs: sum(o[NAME] == HTTP for o in objs) == 4,
                           what="the first configuration's events")
        (old,) = {o[STREAM] for o in parse(first)}
        publish({"request_headers": ["content-type"]})
        wait_for(lambda: envoy.all_stats(r"^listener_manager\.lds\.update_success$")
                 .get("listener_manager.lds.update_success", 0) >= 2, 10, 0.05, "the new listener configuration")
        for i in range(4):
            send(envoy, f"/after/{i}", f"{run_id}-after-{i}")

        def both_sealed(objs):
            return (len({o[STREAM] for o in objs}) == 2 and sum(o[NAME] == HTTP for o in objs) == 8
                    and sealed(objs))

        lines = wait_trail(sink.lines, envoy, both_sealed, what="both streams sealed")
        witness = tmp_path / "witness.log"
        shutil.copy(envoy.log_path, witness)
    trail = Trail(tmp_path, lines, witness)
    objs = trail.objs
    (new,) = {o[STREAM] for o in objs} - {old}
    assert {o["url.path"] for o in objs if o[NAME] == HTTP and o[STREAM] == new} == {f"/after/{i}" for i in range(4)}
    old_events = sorted((o for o in objs if o[STREAM] == old), key=lambda o: o[SEQ])
    assert old_events[-1][NAME] == CHECKPOINT, "the drain sealed the old stream"
    assert old_events[-1]["meshaudit.checkpoint.last_sequence"] == old_events[-2][SEQ]

    report = verify(cli, "--public-key", keys.public, "--witness", witness, trail.write("reload", lines))
    assert report["exit"] == 0, report["violations"]
    by_stream = {s["stream_id"]: s for s in report["streams"]}
    assert set(by_stream) == {old, new}
    for sid, st in by_stream.items():
        mine = [o for o in objs if o[STREAM] == sid]
        assert st["events"] == st["verified"] == len(mine)
        assert st["checkpoints"] == st["checkpoints_valid"] == sum(o[NAME] == CHECKPOINT for o in mine) >= 1
        assert st["unsealed_tail"] == 0
    # The old stream removed whole from the store: only the witness knows it.
    without_old = [line for line, o in zip(lines, objs) if o[STREAM] != old]
    gone = verify(cli, "--public-key", keys.public, "--witness", witness, trail.write("no-old", without_old))
    assert [(v[0], v[1]) for v in found(gone)] == [("missing_stream", old)], gone["violations"]


# ---------------------------------------------------------------------------------------------
# 5. ClickHouse: the trail where it is stored (examples/clickhouse), read by verify --clickhouse
# ---------------------------------------------------------------------------------------------


def run_example(*args: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLICKHOUSE_EXAMPLE / "run.py"), "--url", url, *args],
                          capture_output=True, text=True, timeout=60)


def test_clickhouse_trail_verifies_and_a_deleted_row_is_found(cli, tmp_path, app, wasm, keys, clickhouse, run_id):
    url = clickhouse.url
    schema = run_example("schema", url=url)
    assert schema.returncode == 0, schema.stderr
    insert_path = run_example("insert-path", url=url).stdout.strip()
    envoy = json_envoy(tmp_path, wasm, app.port, clickhouse.http_port, keys,
                       {**JSON_CONFIG, "collector": {"path": insert_path, "authority": "clickhouse.e2e"}})
    n = 6

    def stored() -> list[str]:
        return clickhouse.query("SELECT line FROM meshaudit.trail ORDER BY stream_id, sequence FORMAT TSVRaw").splitlines()

    with testkit.running(envoy):
        for i in range(n):
            send(envoy, f"/ch/{i}", f"{run_id}-ch-{i}")
        lines = wait_trail(stored, envoy, lambda objs: sum(o[NAME] == HTTP for o in objs) == n and sealed(objs),
                           what="the trail in ClickHouse, sealed")
        witness = tmp_path / "witness.log"
        shutil.copy(envoy.log_path, witness)
    objs = parse(lines)
    (sid,) = {o[STREAM] for o in objs}

    report = verify(cli, "--public-key", keys.public, "--witness", witness, "--clickhouse", url)
    assert report["exit"] == 0, report["violations"]
    (st,) = report["streams"]
    assert st["stream_id"] == sid
    assert st["events"] == st["verified"] == len(lines) == n + st["checkpoints"]
    assert st["checkpoints_valid"] == st["checkpoints"] >= 1 and st["unsealed_tail"] == 0
    named = verify(cli, "--public-key", keys.public, "--clickhouse", url, "--clickhouse-table", "meshaudit.trail")
    assert named["exit"] == 0 and named["streams"] == report["streams"]

    # A row deleted in the store (a mutation: applied asynchronously, polled until done).
    k = sorted(o[SEQ] for o in objs if o[NAME] == HTTP)[2]
    clickhouse.query(f"ALTER TABLE meshaudit.trail DELETE WHERE sequence = {k}")
    wait_for(lambda: len(stored()) == len(lines) - 1, 30, 0.1, "the mutation applied")
    after = verify(cli, "--public-key", keys.public, "--witness", witness, "--clickhouse", url)
    assert found(after) == [("deleted", sid, k, k)], after["violations"]
    assert after["exit"] == 1


def test_clickhouse_unreachable_or_refusing_is_exit_2_without_the_password(cli):
    dead = free_port()
    url = f"http://auditor:s3cret-pw@127.0.0.1:{dead}/?user=auditor&password=s3cret-pw"
    proc = subprocess.run([str(cli), "verify", "--clickhouse", url], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"127.0.0.1:{dead}" in proc.stderr and "password=***" in proc.stderr, proc.stderr
    assert "s3cret-pw" not in proc.stderr + proc.stdout


def test_clickhouse_http_error_is_exit_2_naming_the_url(cli, clickhouse):
    missing = subprocess.run([str(cli), "verify", "--clickhouse", clickhouse.url,
                              "--clickhouse-table", "meshaudit.no_such_table"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2, missing.stdout
    assert clickhouse.url in missing.stderr and "no_such_table" in missing.stderr, missing.stderr
    refused = subprocess.run([str(cli), "verify", "--clickhouse", clickhouse.url + "/?password=hidden-pw"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stdout
    assert "HTTP 401" in refused.stderr and "password=***" in refused.stderr, refused.stderr
    assert "hidden-pw" not in refused.stderr + refused.stdout
