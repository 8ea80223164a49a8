-- payment_monitor: a succeeded first payment is applied (processed_at), then confirmed: the
-- member gets a fresh invite link and the receipt. confirmed_at records that second step, so a
-- crash between the two resumes it and a confirmed payment is never looked at again.
ALTER TABLE payments ADD COLUMN confirmed_at {{timestamptz}} NULL;
CREATE INDEX IF NOT EXISTS payments_unconfirmed_idx
    ON payments (processed_at)
    WHERE kind = 'first' AND status = 'succeeded' AND processed_at IS NOT NULL
      AND confirmed_at IS NULL;
