"""The staff admin (Django 5.2): Django's own tables in the `django` logical database, the
domain tables exposed read-mostly through unmanaged models, an overview page.

`domos web` serves it with gunicorn on :8002; settings come from the runtime config
(services.web.settings).
"""
