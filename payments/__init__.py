"""Payments: one home for the money path, used by services and monitors.

`client` (the YooKassa API, async and sync), `requests` and `amounts` (what is sent), `store`
(the payment rows' shared writes), `decisions` (what an answer means: pure), `renewals` (one
renewal at a time per subscription), `reconcile` (a key past its window: what listing the
provider's payments finds), `settings` (the payment settings, read once).
"""
