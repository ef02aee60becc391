-- SOC 2 C1.1 — Redaction evidence: which rules and detectors fired, how often, in how many
-- events (names and counts only: the values never left the proxy). Parameters: since, until.
SELECT
    replaceRegexpOne(entry, ':[^:]*$', '')                       AS rule,
    sum(toUInt64OrZero(replaceRegexpOne(entry, '^.*:', '')))     AS fired,
    count()                                                      AS events
FROM
(
    SELECT arrayJoin(`meshaudit.redaction.rules`) AS entry
    FROM meshaudit.events
    WHERE `event_time` >= parseDateTimeBestEffort({since:String})
      AND `event_time` <  parseDateTimeBestEffort({until:String})
)
GROUP BY rule
ORDER BY fired DESC, rule;
