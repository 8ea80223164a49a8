-- The days a payment buys: its tariff's period_days when the payment was created, the period
-- the member was offered (the description says «на N дн.»; a renewal charge, the period it was
-- planned for) and paid for, as amount_minor is the price. The period it applies is this many
-- days, whatever the tariff says by then: an admin's later edit of the tariff neither lengthens
-- nor shortens a payment already made. NULL: created before this migration (or by code older
-- than it); such a payment buys its tariff's period_days as read when it is applied, as before.
ALTER TABLE payments ADD COLUMN period_days INTEGER NULL
    CONSTRAINT payments_period_check CHECK (period_days > 0);
