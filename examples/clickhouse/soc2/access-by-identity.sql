-- SOC 2 CC6.1, CC6.3 — Access by identity: per service, every caller and operation.
--
-- The caller is the end user of a token Envoy verified (`enduser.id`), else the SPIFFE id of the
-- verified client certificate, else `unauthenticated` with the peer address. The operation is
-- the method and the route template (ids in the path replaced by {n}, {uuid}, {hex}, {id}: the
-- definitions of docs/report.md). Parameters: since (inclusive), until (exclusive), RFC 3339.
SELECT
    service,
    caller_type,
    caller,
    method,
    route,
    count()                 AS requests,
    countIf(denied)         AS denied,
    countIf(error)          AS errors,
    toString(min(event_time)) AS first_seen,
    toString(max(event_time)) AS last_seen
FROM
(
    SELECT
        `event_time` AS event_time,
        concat(if(`k8s.namespace.name` = '', '', concat(`k8s.namespace.name`, '/')), `service.name`) AS service,
        multiIf(`enduser.id` != '', 'end_user', `meshaudit.peer.spiffe_id` != '', 'workload', 'unauthenticated') AS caller_type,
        multiIf(`enduser.id` != '', `enduser.id`, `meshaudit.peer.spiffe_id` != '', `meshaudit.peer.spiffe_id`, `network.peer.address`) AS caller,
        `http.request.method` AS method,
        arrayStringConcat(arrayMap(s -> multiIf(
            match(s, '^[0-9]+$'), '{n}',
            match(s, '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'), '{uuid}',
            length(s) >= 16 AND match(s, '^[0-9a-fA-F]+$'), '{hex}',
            length(s) >= 12 AND match(s, '^[0-9A-Za-z_=.-]+$')
                AND length(replaceRegexpAll(s, '[^0-9]', '')) >= 2
                AND length(replaceRegexpAll(s, '[^0-9]', '')) < length(s), '{id}',
            s), splitByChar('/', `url.path`)), '/') AS route,
        `meshaudit.decision` = 'deny' AS denied,
        `http.response.status_code` >= 500 AS error
    FROM meshaudit.events
    WHERE `event_name` = 'meshaudit.http'
      AND `event_time` >= parseDateTimeBestEffort({since:String})
      AND `event_time` <  parseDateTimeBestEffort({until:String})
)
GROUP BY service, caller_type, caller, method, route
ORDER BY service, requests DESC, caller, method, route;
