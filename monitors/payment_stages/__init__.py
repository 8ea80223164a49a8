"""payment_monitor's stages, each taking the monitor's `PaymentWork` (work.py), never the monitor:
resend (0), events (1), polling (2), confirmation (3), and apply (applying a final outcome,
which the first three finish with)."""
