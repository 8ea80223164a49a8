"""botapi (Flask on :6000, gunicorn): the YooKassa webhook, the internal `POST /send`, health and
metrics. See services/botapi/README.md."""
