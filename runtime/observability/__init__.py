"""Observability files derived from the program catalogue: the Prometheus scrape config, the
Alertmanager config, the Grafana dashboard, and the container health check.

`domos observability render` writes prometheus/prometheus.yml, prometheus/alertmanager.yml and
grafana/dashboards/*.json; `--check` (run by the tests) fails when the committed files differ from
what the catalogue and the panel list produce. `domos health` is the container HEALTHCHECK.
"""
