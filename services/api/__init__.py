"""The domos REST API (FastAPI on :8001): subscription status, payments, advert and contract tokens.

    app = create_app(Settings.from_env(), ApiSettings.from_env())

See services/api/README.md for the endpoints and their error codes.
"""
