-- Who called service X between two instants: one row per caller.
--
-- The caller is the SPIFFE identity of its mTLS certificate, as the called service's sidecar saw
-- it; a caller without one (plaintext, or TLS without a client certificate) is shown by its
-- address. Parameters (`run.py query` fills them; `clickhouse-client --param_NAME=...` on
-- ClickHouse 19.x and later):
--   service  service.name of the called workload, e.g. checkout
--   since    start, inclusive, RFC 3339 (2025-01-01T00:00:00Z)
--   until    end, exclusive, RFC 3339
-- Events that were lost are not here, but each loss is: see "Holes in the trail" in README.md.
SELECT
    if(`meshaudit.peer.spiffe_id` != '',
       `meshaudit.peer.spiffe_id`,
       concat('unauthenticated ', `network.peer.address`))             AS caller,
    any(`meshaudit.peer.namespace`)                               AS caller_namespace,
    any(`meshaudit.peer.service_account`)                         AS caller_service_account,
    count()                                                       AS calls,
    countIf(`http.response.status_code` >= 400)                   AS failed_calls,
    toString(min(`event_time`))                                   AS first_call,
    toString(max(`event_time`))                                   AS last_call,
    arraySlice(arraySort(groupUniqArray(concat(`http.request.method`, ' ', `url.path`))), 1, 20) AS operations
FROM meshaudit.events
WHERE `event_name` = 'meshaudit.http'
  AND `service.name` = {service:String}
  AND `event_time` >= parseDateTimeBestEffort({since:String})
  AND `event_time` <  parseDateTimeBestEffort({until:String})
GROUP BY caller
ORDER BY calls DESC, caller;
