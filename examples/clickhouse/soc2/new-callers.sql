-- SOC 2 CC7.2 — New caller→service pairs: authenticated identities (end users and workloads)
-- calling a service in the period that they never called in the baseline before it.
-- Parameters: baseline_since (inclusive), since (the period's start, the baseline's end), until.
SELECT
    caller,
    service,
    count()                                      AS requests,
    toString(min(`event_time`))                  AS first_seen
FROM
(
    SELECT
        `event_time`,
        multiIf(`enduser.id` != '', concat('end_user:', `enduser.id`),
                concat('workload:', `meshaudit.peer.spiffe_id`)) AS caller,
        concat(if(`k8s.namespace.name` = '', '', concat(`k8s.namespace.name`, '/')), `service.name`) AS service
    FROM meshaudit.events
    WHERE `event_name` = 'meshaudit.http'
      AND (`enduser.id` != '' OR `meshaudit.peer.spiffe_id` != '')
      AND `event_time` >= parseDateTimeBestEffort({baseline_since:String})
      AND `event_time` <  parseDateTimeBestEffort({until:String})
)
GROUP BY caller, service
HAVING min(`event_time`) >= parseDateTimeBestEffort({since:String})
ORDER BY first_seen, caller, service;
