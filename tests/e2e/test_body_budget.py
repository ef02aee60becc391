"""Body capture is bounded whatever the traffic (issue 13, class 6), against a real Envoy.

Hundreds of concurrent HTTP/1.1 uploads each stream more than a body's capture limit, slowly,
and never finish (they declare a 1 MiB Content-Length and send 96 KiB). Together they want ~25
times the body-capture budget of Envoy's one worker. The test shows that:

- the worker's VM keeps working: a request during the load and one after it get 200, and their
  events arrive;
- body capture never held more than the budget (the peak gauge, and the bytes gauge sampled
  throughout), and every byte comes back once the connections close (the gauge returns to 0);
- the bodies the budget could not cover are marked `skipped:budget` / `truncated:budget`, the
  count of such markers equals `meshaudit.bodies_over_budget`, and what was kept is a prefix of
  what was sent, no longer than `max_bytes`.

Everything binds 127.0.0.1; every wait polls against a deadline. The load is bounded: UPLOADS
connections, SENT bytes each, a few seconds.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import testkit
from testkit import GaugeSampler, wait_for

BUDGET = 1 << 20
MAX_BYTES = 64 * 1024
MARGIN = 256  # BODY_MARGIN: capture takes this much beyond max_bytes
UPLOADS = 400
CHUNK = 8 * 1024
SENT = 96 * 1024  # per upload: more than max_bytes + margin
DECLARED = 1 << 20  # the Content-Length each upload announces and never reaches
PACE = 0.02  # seconds between two chunks of one upload (load pacing, not synchronization)

BUDGET_MARKERS = {"skipped:budget", "truncated:budget"}
WORDS = b"lorem ipsum dolor sit amet "

PLUGIN = {
    "mode": "http",
    "flush_interval_ms": 100,
    "request_headers": ["content-type"],
    "body_capture": [
        {"match": {"path_prefix": "/upload/"}, "max_bytes": MAX_BYTES, "content_types": ["text/plain"]},
    ],
    "body_capture_budget_bytes": BUDGET,
}


def text(n: int) -> bytes:
    return (WORDS * (n // len(WORDS) + 1))[:n]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, wasm, pki):
    with testkit.sidecar_stack(tmp_path_factory.mktemp("body-budget"), wasm, pki, PLUGIN) as s:
        yield s


class Uploads:
    """UPLOADS slow uploads on their own asyncio loop (one thread): each connects, sends its
    headers and SENT bytes of body in CHUNK pieces, then holds the connection open until
    `close()`, which closes every connection mid-body."""

    def __init__(self, port: int, base: str) -> None:
        self.port = port
        self.base = base
        self.sent_all = 0
        self.failures: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.release: asyncio.Event | None = None
        self.done = None

    def start(self) -> "Uploads":
        self.thread.start()
        self.done = asyncio.run_coroutine_threadsafe(self._all(), self.loop)
        return self

    async def _all(self) -> None:
        self.release = asyncio.Event()
        await asyncio.gather(*(self._one(i) for i in range(UPLOADS)))

    async def _one(self, i: int) -> None:
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
            head = (
                f"POST {self.base}/{i} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {DECLARED}\r\n\r\n"
            ).encode()
            writer.write(head)
            body = text(SENT)
            for at in range(0, SENT, CHUNK):
                writer.write(body[at : at + CHUNK])
                await asyncio.wait_for(writer.drain(), 10)
                await asyncio.sleep(PACE)
            self.sent_all += 1
            await self.release.wait()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.failures.append(f"upload {i}: {e!r}")
        finally:
            if writer is not None:
                writer.close()

    def close(self, timeout: float = 20.0) -> None:
        """Closes every upload mid-body (the client goes away) and waits until all are closed."""
        if not self.thread.is_alive():
            return
        if self.release is not None:
            self.loop.call_soon_threadsafe(self.release.set)
        if self.done is not None:
            self.done.result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)


def body_stat(envoy: testkit.Envoy, suffix: str) -> int:
    return testkit.metric(envoy.all_stats("meshaudit"), suffix)


def test_many_endless_uploads_stay_within_the_body_budget(stack, run_id):
    envoy = stack.envoy
    base = f"/upload/{run_id}/slow"
    uploads = Uploads(stack.listener_port, base)
    # At most this many bodies can reach their capture limit within the budget; every other
    # upload must be stopped by it.
    fit = BUDGET // (MAX_BYTES + MARGIN)
    try:
        with GaugeSampler(envoy, "meshaudit.body_capture_bytes", interval=0.02) as held:
            uploads.start()
            wait_for(
                lambda: uploads.sent_all + len(uploads.failures) >= UPLOADS,
                30,
                0.05,
                lambda: f"every upload sent {SENT} bytes ({uploads.sent_all} did; failures {uploads.failures[:3]})",
            )
            assert not uploads.failures, uploads.failures[:5]
            # Envoy has seen every chunk once at least UPLOADS - fit bodies were stopped.
            wait_for(
                lambda: body_stat(envoy, "meshaudit.bodies_over_budget") >= UPLOADS - fit,
                15,
                0.05,
                lambda: f"{UPLOADS - fit} bodies stopped by the budget; stats {stack._safe_stats()}",
            )
            assert 0 < body_stat(envoy, "meshaudit.body_capture_bytes") <= BUDGET

            # While the budget is spent, a finished upload still passes, and its event says why its
            # body is missing. Its body (max_bytes + margin) cannot fit in what is left, since
            # the smallest chunk the budget refused was at most that long.
            during = f"/upload/{run_id}/during"
            r = stack.request(
                during, method="POST", headers={"content-type": "text/plain"}, body=text(MAX_BYTES + MARGIN)
            )
            assert r.status == 200, r
            (rec,) = stack.records_for_path(during)
            assert rec.attr("meshaudit.request.body.capture") in BUDGET_MARKERS, rec.attributes

            uploads.close()
            # Every byte comes back once the connections are gone.
            wait_for(
                lambda: body_stat(envoy, "meshaudit.body_capture_bytes") == 0,
                15,
                0.05,
                lambda: f"body_capture_bytes back to 0; stats {stack._safe_stats()}",
            )
    finally:
        uploads.close()

    assert not held.errors, held.errors[:3]
    assert held.samples, "no sample of meshaudit.body_capture_bytes"
    assert max(held.samples) <= BUDGET, f"body capture held {max(held.samples)} > {BUDGET}"
    peak = body_stat(envoy, "meshaudit.body_capture_peak_bytes")
    assert BUDGET - (MAX_BYTES + MARGIN) < peak <= BUDGET, peak

    # Each aborted upload has its event; what the budget stopped is marked.
    slow = stack.wait_records(
        lambda r: str(r.attr("url.path", "")).startswith(base + "/"), UPLOADS, 30, "events of the aborted uploads"
    )
    assert len({r.attr("url.path") for r in slow}) == UPLOADS
    markers = [r.attr("meshaudit.request.body.capture") for r in slow]
    assert set(markers) <= BUDGET_MARKERS | {"truncated"}, set(markers)
    assert markers.count("truncated") <= fit, markers.count("truncated")
    assert markers.count("skipped:budget") > 0 and markers.count("truncated:budget") > 0, {
        m: markers.count(m) for m in set(markers)
    }
    sent = text(SENT).decode()
    for r in slow:
        body = r.attr("meshaudit.request.body")
        if r.attr("meshaudit.request.body.capture") == "skipped:budget":
            assert body is None, r.attributes
        else:
            assert body and len(body) <= MAX_BYTES and sent.startswith(body), r.attributes

    # After the load: a request's body is captured whole again, on both sides.
    after = f"/upload/{run_id}/after"
    r = stack.request(after, method="POST", headers={"content-type": "text/plain"}, body=text(1000))
    assert r.status == 200, r
    (rec,) = stack.records_for_path(after)
    assert rec.attr("meshaudit.request.body.capture") == "complete", rec.attributes
    assert rec.attr("meshaudit.request.body") == text(1000).decode()
    assert rec.attr("meshaudit.response.body.capture") == "complete", rec.attributes

    # The counter matches the markers, request and response sides of every event of this test.
    mine = [r for r in stack.records() if str(r.attr("url.path", "")).startswith(f"/upload/{run_id}/")]
    marked = sum(
        r.attr(f"meshaudit.{side}.body.capture") in BUDGET_MARKERS for r in mine for side in ("request", "response")
    )
    wait_for(
        lambda: body_stat(envoy, "meshaudit.bodies_over_budget") == marked,
        10,
        0.05,
        lambda: f"bodies_over_budget == {marked} markers; stats {stack._safe_stats()}",
    )
    assert body_stat(envoy, "meshaudit.body_capture_bytes") == 0

    print(
        f"\n{UPLOADS} uploads: markers { {m: markers.count(m) for m in sorted(set(markers))} }, "
        f"bodies_over_budget {marked}, peak {peak} of {BUDGET}, {len(held.samples)} gauge samples "
        f"(max {max(held.samples)})"
    )
    log = envoy.log_text()
    for sign in ("panicked", "Uncaught", "Function: proxy_on"):
        assert sign not in log, f"{sign!r} in the Envoy log:\n{testkit.log_tail(envoy.log_path, 20)}"
