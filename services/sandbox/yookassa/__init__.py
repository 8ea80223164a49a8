"""The YooKassa API v3 half of the sandbox."""
