-- SOC 2 CC6.6 — Unauthenticated access: requests with neither a verified client certificate
-- nor a verified token, per service and route. Parameters: since, until (RFC 3339).
SELECT
    concat(if(`k8s.namespace.name` = '', '', concat(`k8s.namespace.name`, '/')), `service.name`) AS service,
    `http.request.method`                        AS method,
    `url.path`                                   AS path,
    count()                                      AS requests,
    countIf(`meshaudit.decision` = 'deny')       AS denied,
    uniqExact(`network.peer.address`)            AS addresses,
    toString(min(`event_time`))                  AS first_seen,
    toString(max(`event_time`))                  AS last_seen
FROM meshaudit.events
WHERE `event_name` = 'meshaudit.http'
  AND `enduser.id` = '' AND `meshaudit.peer.spiffe_id` = ''
  AND `event_time` >= parseDateTimeBestEffort({since:String})
  AND `event_time` <  parseDateTimeBestEffort({until:String})
GROUP BY service, method, path
ORDER BY requests DESC, service, path;
