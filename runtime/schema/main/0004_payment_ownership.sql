-- payment_monitor confirms every applied payment that is not a recurrent_payments charge: first
-- payments and the renewals members pay by hand (through the API or the bot) alike. A charge's
-- confirmation is recurrent_payments' own renewal receipt, so it now sets confirmed_at with it;
-- charges applied before that are marked here, or the confirmation query would meet every one
-- of them forever.
UPDATE payments SET confirmed_at = coalesce(processed_at, updated_at)
WHERE status = 'succeeded' AND processed_at IS NOT NULL AND confirmed_at IS NULL
  AND id IN (SELECT payment_id FROM charge_attempts WHERE payment_id IS NOT NULL);
DROP INDEX IF EXISTS payments_unconfirmed_idx;
CREATE INDEX IF NOT EXISTS payments_to_confirm_idx
    ON payments (processed_at)
    WHERE status = 'succeeded' AND processed_at IS NOT NULL AND confirmed_at IS NULL;
