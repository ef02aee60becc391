-- SOC 2 CC6.1, CC6.3 — Privileged routes: who reached paths under a prefix (`/admin/`), and how
-- often they were refused. Parameters: prefix, since, until (RFC 3339).
SELECT
    concat(if(`k8s.namespace.name` = '', '', concat(`k8s.namespace.name`, '/')), `service.name`) AS service,
    multiIf(`enduser.id` != '', concat('end_user:', `enduser.id`),
            `meshaudit.peer.spiffe_id` != '', concat('workload:', `meshaudit.peer.spiffe_id`),
            concat('unauthenticated:', `network.peer.address`)) AS caller,
    `http.request.method`                        AS method,
    count()                                      AS requests,
    countIf(`meshaudit.decision` = 'deny')       AS denied,
    toString(min(`event_time`))                  AS first_seen,
    toString(max(`event_time`))                  AS last_seen
FROM meshaudit.events
WHERE `event_name` = 'meshaudit.http'
  AND startsWith(`url.path`, {prefix:String})
  AND `event_time` >= parseDateTimeBestEffort({since:String})
  AND `event_time` <  parseDateTimeBestEffort({until:String})
GROUP BY service, caller, method
ORDER BY requests DESC, service, caller;
