-- The start of the period a payment moved the subscription on from: its current_period_start
-- just before the payment extended it. A full refund of a renewal whose period has not begun
-- yet (a saved card is charged a day ahead) gives the member back that earlier period, paid
-- before, instead of ending access at once. NULL: the payment started a subscription, or
-- renewed one that had lapsed (no earlier period to return to).
ALTER TABLE payments ADD COLUMN prior_period_start {{timestamptz}} NULL;
