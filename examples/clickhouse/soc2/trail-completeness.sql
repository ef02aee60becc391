-- SOC 2 CC7.2, CC4.1 — Trail completeness: per stream (one per proxy worker and configuration),
-- the events stored in the period and the losses the stream itself reported in gap events.
-- Whether the stored events are the ones written is `meshaudit verify`'s question
-- (docs/integrity.md). Parameters: since, until (RFC 3339).
SELECT
    `meshaudit.stream.id`                                        AS stream,
    any(concat(if(`k8s.namespace.name` = '', '', concat(`k8s.namespace.name`, '/')), `service.name`)) AS workload,
    count()                                                      AS events,
    countIf(`event_name` = 'meshaudit.gap')                      AS gap_events,
    sumIf(`meshaudit.gap.events`, `event_name` = 'meshaudit.gap') AS lost,
    toString(min(`event_time`))                                  AS first_event,
    toString(max(`event_time`))                                  AS last_event
FROM meshaudit.events
WHERE `meshaudit.stream.id` != ''
  AND `event_time` >= parseDateTimeBestEffort({since:String})
  AND `event_time` <  parseDateTimeBestEffort({until:String})
GROUP BY stream
ORDER BY stream;
