-- meshaudit audit events in ClickHouse: one row per JSON line (`"format": "json"`).
--
-- Column names are the event's attribute names, so ClickHouse maps each JSON field to its
-- column (JSONEachRow; `input_format_skip_unknown_fields=1` ignores fields without a column).
-- Dotted names need backticks. Types follow the JSON meshaudit writes: strings, integers,
-- booleans (stored as UInt8) and lists of strings (Array(String)). A field an event does not
-- have is stored as the column's default ('' / 0 / []), or NULL where the column is Nullable.
--
-- Lists: ClickHouse reads Array columns whose names share the part before the first dot as one
-- Nested structure, and refuses a batch with a row whose lists there differ in length (18.16
-- answers such errors with a 500, which meshaudit retries: one bad row holds up delivery until
-- the buffer overflows). Keep at most ONE Array column per first name part: here
-- `meshaudit.redaction.rules`. The other lists (allowlisted headers `http.request.header.*`,
-- `meshaudit.peer.uri_sans`, `meshaudit.capture.anomalies`) are skipped on insert; to keep one
-- header, add it as the only `http.` Array column.
--
-- Apply with `python3 run.py schema` (it also handles servers older than 19.6, which do not
-- know TTL; see README.md), or with `clickhouse-client --multiquery < schema.sql`.

CREATE DATABASE IF NOT EXISTS meshaudit;

CREATE TABLE IF NOT EXISTS meshaudit.events
(
    -- When: RFC 3339 with nanoseconds as sent, and derived columns to index and partition by.
    `time`                                    String,
    `observed_time`                           String,
    `event_time`                              DateTime MATERIALIZED parseDateTimeBestEffort(`time`),
    `event_date`                              Date MATERIALIZED toDate(parseDateTimeBestEffort(`time`)),

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

    -- Result.
    `http.response.status_code`               UInt16,
    `rpc.grpc.status_code`                    Nullable(Int32),
    `http.request.size`                       UInt64,
    `http.request.body.size`                  UInt64,
    `http.response.size`                      UInt64,
    `http.response.body.size`                 UInt64,
    `meshaudit.duration_ns`                   UInt64,
    `meshaudit.envoy.response_flags`          String,
    `meshaudit.envoy.response_code_details`   String,
    `meshaudit.envoy.route_name`              String,
    `meshaudit.envoy.upstream_cluster`        String,
    `meshaudit.envoy.listener_direction`      String,
    `meshaudit.upstream.address`              String,

    -- From where, and who: the connection and the caller's certificate identity.
    `client.address`                          String,
    `client.port`                             UInt16,
    `network.local.address`                   String,
    `network.local.port`                      UInt16,
    `tls.protocol.version`                    String,
    `tls.client.server_name`                  String,
    `meshaudit.tls.mtls`                      UInt8,
    `meshaudit.peer.subject`                  String,
    `meshaudit.peer.sha256`                   String,
    `meshaudit.peer.spiffe_id`                String,
    `meshaudit.peer.trust_domain`             String,
    `meshaudit.peer.namespace`                String,
    `meshaudit.peer.service_account`          String,
    `meshaudit.local.spiffe_id`               String,
    `meshaudit.upstream.peer.spiffe_id`       String,

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
