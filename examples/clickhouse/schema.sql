-- meshaudit audit events in ClickHouse (`"format": "json"`): the trail as written, and a table
-- to query it by.
--
-- meshaudit.trail keeps every JSON line byte for byte, as meshaudit wrote it: every attribute an
-- event carries survives (allowlisted headers, lists, the integrity chain), so `meshaudit verify
-- --clickhouse URL` can rebuild each event's canonical form and check the chain (docs/integrity.md).
-- meshaudit inserts into it with `FORMAT CSV` and the delimiter byte 0x01, which no JSON line
-- holds (control characters are escaped in JSON): each line is one field, read as is (see
-- README.md for the insert path; ClickHouse 18.16 has no LineAsString format).
--
-- meshaudit.events is filled from the trail by a materialized view, one row per line: the
-- columns an auditor's queries need, extracted with the visitParam functions (present from
-- ClickHouse 18 on). It is derived, and can be rebuilt from the trail at any time
-- (`INSERT INTO meshaudit.events SELECT ... FROM meshaudit.trail`, the view's query). A field an
-- event does not have is the column's default ('' / 0 / []), or NULL where the column is
-- Nullable. Booleans are UInt8.
--
-- Lists: ClickHouse reads Array columns whose names share the part before the first dot as one
-- Nested structure, and refuses rows whose lists there differ in length, so events keeps ONE
-- Array column per first name part (`meshaudit.redaction.rules`); the other lists (allowlisted
-- headers `http.request.header.*`, `meshaudit.peer.uri_sans`, `meshaudit.capture.anomalies`)
-- are in the trail's lines.
--
-- Apply with `python3 run.py schema` (it also handles servers older than 19.6, which do not
-- know TTL; see README.md), or with `clickhouse-client --multiquery < schema.sql`.

CREATE DATABASE IF NOT EXISTS meshaudit;

CREATE TABLE IF NOT EXISTS meshaudit.trail
(
    -- One JSON line as meshaudit wrote it.
    `line`                String,
    -- Derived, to order and partition by.
    `stream_id`           String MATERIALIZED visitParamExtractString(`line`, 'meshaudit.stream.id'),
    `sequence`            UInt64 MATERIALIZED visitParamExtractUInt(`line`, 'meshaudit.sequence'),
    `event_date`          Date MATERIALIZED toDate(parseDateTimeBestEffort(visitParamExtractString(`line`, 'time')))
)
ENGINE = MergeTree()
PARTITION BY `event_date`
ORDER BY (`stream_id`, `sequence`)
-- Retention: rows are deleted once they are older than 365 days (ClickHouse 19.6 and later).
TTL `event_date` + INTERVAL 365 DAY;

CREATE TABLE IF NOT EXISTS meshaudit.events
(
    -- When: RFC 3339 with nanoseconds as sent, and derived columns to index and partition by.
    `time`                                    String,
    `observed_time`                           String,
    `event_time`                              DateTime DEFAULT parseDateTimeBestEffort(`time`),
    `event_date`                              Date DEFAULT toDate(parseDateTimeBestEffort(`time`)),

    `event_name`                              String,
    `body`                                    String,
    `trace_id`                                String,
    `span_id`                                 String,

    -- Delivery: a unique id per event, its stream and position (holes are reported by
    -- meshaudit.gap events, below).
    `log.record.uid`                          String,
    `meshaudit.stream.id`                     String,
    `meshaudit.sequence`                      UInt64,

    -- What.
    `meshaudit.request.id`                    String,
    `http.request.method`                     String,
    `url.scheme`                              String,
    `url.path`                                String,
    `url.query`                               String,
    `server.address`                          String,
    `server.port`                             UInt16,
    `network.protocol.name`                   String,
    `network.protocol.version`                String,
    `user_agent.original`                     String,
    -- A TCP connection's event: open, interim or close (docs/tcp.md).
    `meshaudit.tcp.phase`                     String,

    -- Result.
    `http.response.status_code`               UInt16,
    `rpc.response.status_code`                String,
    `http.request.size`                       UInt64,
    `http.request.body.size`                  UInt64,
    `http.response.size`                      UInt64,
    `http.response.body.size`                 UInt64,
    `meshaudit.duration_ns`                   UInt64,
    `meshaudit.envoy.response_flags`          String,
    `meshaudit.envoy.response_code_details`   String,
    `meshaudit.decision`                      String,
    `enduser.id`                              String,
    `meshaudit.decision.reason`               String,
    `meshaudit.decision.policy`               String,
    `meshaudit.envoy.route_name`              String,
    `meshaudit.envoy.upstream_cluster`        String,
    `meshaudit.envoy.listener_direction`      String,
    `meshaudit.upstream.address`              String,

    -- From where, and who: the connection and the caller's certificate identity.
    `network.peer.address`                    String,
    `network.peer.port`                       UInt16,
    `network.local.address`                   String,
    `network.local.port`                      UInt16,
    `tls.protocol.version`                    String,
    `meshaudit.tls.server_name`               String,
    `meshaudit.tls.mtls`                      UInt8,
    `tls.client.subject`                      String,
    `tls.client.hash.sha256`                  String,
    `meshaudit.peer.spiffe_id`                String,
    `meshaudit.peer.trust_domain`             String,
    `meshaudit.peer.namespace`                String,
    `meshaudit.peer.service_account`          String,
    `meshaudit.local.spiffe_id`               String,
    `meshaudit.upstream.peer.spiffe_id`       String,
    -- The calling (and, on outbound sidecars, the called) workload as Istio's metadata
    -- exchange describes it; what the peer says, beside its verified SPIFFE id.
    `meshaudit.source.workload.namespace`     String,
    `meshaudit.source.workload.name`          String,
    `meshaudit.destination.workload.name`     String,

    -- Which redaction rules fired, with counts (never the values).
    `meshaudit.redaction.rules`               Array(String),

    -- Loss reports (event_name = 'meshaudit.gap').
    `meshaudit.gap.first_sequence`            UInt64,
    `meshaudit.gap.last_sequence`             UInt64,
    `meshaudit.gap.events`                    UInt64,
    `meshaudit.gap.reason`                    String,

    -- The workload that recorded the event (resource attributes).
    `service.name`                            String,
    `service.version`                         String,
    `k8s.namespace.name`                      String,
    `k8s.pod.name`                            String,
    `meshaudit.workload.name`                 String,
    `k8s.cluster.name`                        String,
    `meshaudit.mesh.id`                       String,
    `telemetry.sdk.name`                      String,
    `telemetry.sdk.version`                   String
)
ENGINE = MergeTree()
PARTITION BY `event_date`
ORDER BY (`service.name`, `event_time`, `log.record.uid`)
-- Retention: rows are deleted once they are older than 365 days (ClickHouse 19.6 and later).
TTL `event_date` + INTERVAL 365 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS meshaudit.events_from_trail TO meshaudit.events AS
SELECT
    visitParamExtractString(`line`, 'time') AS `time`,
    visitParamExtractString(`line`, 'observed_time') AS `observed_time`,
    parseDateTimeBestEffort(`time`) AS `event_time`,
    toDate(`event_time`) AS `event_date`,
    visitParamExtractString(`line`, 'event_name') AS `event_name`,
    visitParamExtractString(`line`, 'body') AS `body`,
    visitParamExtractString(`line`, 'trace_id') AS `trace_id`,
    visitParamExtractString(`line`, 'span_id') AS `span_id`,
    visitParamExtractString(`line`, 'log.record.uid') AS `log.record.uid`,
    visitParamExtractString(`line`, 'meshaudit.stream.id') AS `meshaudit.stream.id`,
    toUInt64(visitParamExtractUInt(`line`, 'meshaudit.sequence')) AS `meshaudit.sequence`,
    visitParamExtractString(`line`, 'meshaudit.request.id') AS `meshaudit.request.id`,
    visitParamExtractString(`line`, 'http.request.method') AS `http.request.method`,
    visitParamExtractString(`line`, 'url.scheme') AS `url.scheme`,
    visitParamExtractString(`line`, 'url.path') AS `url.path`,
    visitParamExtractString(`line`, 'url.query') AS `url.query`,
    visitParamExtractString(`line`, 'server.address') AS `server.address`,
    toUInt16(visitParamExtractUInt(`line`, 'server.port')) AS `server.port`,
    visitParamExtractString(`line`, 'network.protocol.name') AS `network.protocol.name`,
    visitParamExtractString(`line`, 'network.protocol.version') AS `network.protocol.version`,
    visitParamExtractString(`line`, 'user_agent.original') AS `user_agent.original`,
    visitParamExtractString(`line`, 'meshaudit.tcp.phase') AS `meshaudit.tcp.phase`,
    toUInt16(visitParamExtractUInt(`line`, 'http.response.status_code')) AS `http.response.status_code`,
    visitParamExtractString(`line`, 'rpc.response.status_code') AS `rpc.response.status_code`,
    toUInt64(visitParamExtractUInt(`line`, 'http.request.size')) AS `http.request.size`,
    toUInt64(visitParamExtractUInt(`line`, 'http.request.body.size')) AS `http.request.body.size`,
    toUInt64(visitParamExtractUInt(`line`, 'http.response.size')) AS `http.response.size`,
    toUInt64(visitParamExtractUInt(`line`, 'http.response.body.size')) AS `http.response.body.size`,
    toUInt64(visitParamExtractUInt(`line`, 'meshaudit.duration_ns')) AS `meshaudit.duration_ns`,
    visitParamExtractString(`line`, 'meshaudit.envoy.response_flags') AS `meshaudit.envoy.response_flags`,
    visitParamExtractString(`line`, 'meshaudit.envoy.response_code_details') AS `meshaudit.envoy.response_code_details`,
    visitParamExtractString(`line`, 'meshaudit.decision') AS `meshaudit.decision`,
    visitParamExtractString(`line`, 'enduser.id') AS `enduser.id`,
    visitParamExtractString(`line`, 'meshaudit.decision.reason') AS `meshaudit.decision.reason`,
    visitParamExtractString(`line`, 'meshaudit.decision.policy') AS `meshaudit.decision.policy`,
    visitParamExtractString(`line`, 'meshaudit.envoy.route_name') AS `meshaudit.envoy.route_name`,
    visitParamExtractString(`line`, 'meshaudit.envoy.upstream_cluster') AS `meshaudit.envoy.upstream_cluster`,
    visitParamExtractString(`line`, 'meshaudit.envoy.listener_direction') AS `meshaudit.envoy.listener_direction`,
    visitParamExtractString(`line`, 'meshaudit.upstream.address') AS `meshaudit.upstream.address`,
    visitParamExtractString(`line`, 'network.peer.address') AS `network.peer.address`,
    toUInt16(visitParamExtractUInt(`line`, 'network.peer.port')) AS `network.peer.port`,
    visitParamExtractString(`line`, 'network.local.address') AS `network.local.address`,
    toUInt16(visitParamExtractUInt(`line`, 'network.local.port')) AS `network.local.port`,
    visitParamExtractString(`line`, 'tls.protocol.version') AS `tls.protocol.version`,
    visitParamExtractString(`line`, 'meshaudit.tls.server_name') AS `meshaudit.tls.server_name`,
    toUInt8(visitParamExtractBool(`line`, 'meshaudit.tls.mtls')) AS `meshaudit.tls.mtls`,
    visitParamExtractString(`line`, 'tls.client.subject') AS `tls.client.subject`,
    visitParamExtractString(`line`, 'tls.client.hash.sha256') AS `tls.client.hash.sha256`,
    visitParamExtractString(`line`, 'meshaudit.peer.spiffe_id') AS `meshaudit.peer.spiffe_id`,
    visitParamExtractString(`line`, 'meshaudit.peer.trust_domain') AS `meshaudit.peer.trust_domain`,
    visitParamExtractString(`line`, 'meshaudit.peer.namespace') AS `meshaudit.peer.namespace`,
    visitParamExtractString(`line`, 'meshaudit.peer.service_account') AS `meshaudit.peer.service_account`,
    visitParamExtractString(`line`, 'meshaudit.local.spiffe_id') AS `meshaudit.local.spiffe_id`,
    visitParamExtractString(`line`, 'meshaudit.upstream.peer.spiffe_id') AS `meshaudit.upstream.peer.spiffe_id`,
    visitParamExtractString(`line`, 'meshaudit.source.workload.namespace') AS `meshaudit.source.workload.namespace`,
    visitParamExtractString(`line`, 'meshaudit.source.workload.name') AS `meshaudit.source.workload.name`,
    visitParamExtractString(`line`, 'meshaudit.destination.workload.name') AS `meshaudit.destination.workload.name`,
    arrayMap(x -> replaceAll(replaceAll(x, '\\"', '"'), '\\\\', '\\'), extractAll(visitParamExtractRaw(`line`, 'meshaudit.redaction.rules'), '"((?:[^"\\\\]|\\\\.)*)"')) AS `meshaudit.redaction.rules`,
    toUInt64(visitParamExtractUInt(`line`, 'meshaudit.gap.first_sequence')) AS `meshaudit.gap.first_sequence`,
    toUInt64(visitParamExtractUInt(`line`, 'meshaudit.gap.last_sequence')) AS `meshaudit.gap.last_sequence`,
    toUInt64(visitParamExtractUInt(`line`, 'meshaudit.gap.events')) AS `meshaudit.gap.events`,
    visitParamExtractString(`line`, 'meshaudit.gap.reason') AS `meshaudit.gap.reason`,
    visitParamExtractString(`line`, 'service.name') AS `service.name`,
    visitParamExtractString(`line`, 'service.version') AS `service.version`,
    visitParamExtractString(`line`, 'k8s.namespace.name') AS `k8s.namespace.name`,
    visitParamExtractString(`line`, 'k8s.pod.name') AS `k8s.pod.name`,
    visitParamExtractString(`line`, 'meshaudit.workload.name') AS `meshaudit.workload.name`,
    visitParamExtractString(`line`, 'k8s.cluster.name') AS `k8s.cluster.name`,
    visitParamExtractString(`line`, 'meshaudit.mesh.id') AS `meshaudit.mesh.id`,
    visitParamExtractString(`line`, 'telemetry.sdk.name') AS `telemetry.sdk.name`,
    visitParamExtractString(`line`, 'telemetry.sdk.version') AS `telemetry.sdk.version`
FROM meshaudit.trail;
