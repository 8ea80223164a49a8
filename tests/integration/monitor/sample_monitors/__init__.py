"""Small real monitors that the integration tests run as `domos monitor NAME` subprocesses.

Found through DOMOS_MONITOR_PACKAGE=sample_monitors with this directory's parent on PYTHONPATH.
Their tables are created by the tests (SCHEMA in the test module) before the processes start.
"""
