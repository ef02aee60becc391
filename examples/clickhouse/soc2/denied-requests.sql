-- SOC 2 CC6.1 — Denied requests by day, reason and policy: the access decision Envoy's own
-- filters (RBAC, jwt_authn, ext_authz, rate limits) or meshaudit's fail-closed routes made.
-- Reasons: docs/event-schema.md#the-access-decision. Parameters: since, until (RFC 3339).
SELECT
    toString(`event_date`)                       AS day,
    `meshaudit.decision.reason`                  AS reason,
    `meshaudit.decision.policy`                  AS policy,
    concat(if(`k8s.namespace.name` = '', '', concat(`k8s.namespace.name`, '/')), `service.name`) AS service,
    count()                                      AS denied
FROM meshaudit.events
WHERE `meshaudit.decision` = 'deny'
  AND `event_time` >= parseDateTimeBestEffort({since:String})
  AND `event_time` <  parseDateTimeBestEffort({until:String})
GROUP BY day, reason, policy, service
ORDER BY day, reason, policy, service;
