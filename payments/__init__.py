"""Payments: one home for the money path, used by services and monitors.

`decisions` (what a provider answer means: pure), `renewals` (one renewal at a time per
subscription), `settings` (the payment settings, read once from the environment).
"""
