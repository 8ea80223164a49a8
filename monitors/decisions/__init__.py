"""Pure decision logic of the monitors: no I/O, no clock reads, every input explicit.

Each module here is table-tested in tests/unit/monitors/. The Monitor subclasses in monitors/*.py
read the database and call the providers; what to do with what they read is decided here.
"""
