-- Let the monitors' due queries use their partial indexes on SQLite too.
--
-- Without statistics SQLite's planner prefers any index whose first column is compared with `=`
-- or IN, so these general (status, …) indexes won over the partial "due" indexes and every due
-- query sorted all open rows in a temporary B-tree. The admin's needs are kept by narrower
-- indexes that do not compete. (PostgreSQL chose well either way.)

DROP INDEX IF EXISTS outbox_status_created_idx;
-- dead letters, for the admin and the dead-letter alert
CREATE INDEX IF NOT EXISTS outbox_dead_idx ON outbox (updated_at) WHERE status = 'dead';

DROP INDEX IF EXISTS payments_status_created_idx;
-- payments by date (the admin filters the status on top)
CREATE INDEX IF NOT EXISTS payments_created_idx ON payments (created_at);

DROP INDEX IF EXISTS subscriptions_status_period_end_idx;
-- tsmonitor: active subscriptions by period end (reminders, active -> grace)
CREATE INDEX IF NOT EXISTS subscriptions_active_period_end_idx
    ON subscriptions (current_period_end) WHERE status = 'active';
