"""Backups and restores of the SQLite files and of the PostgreSQL database (`domos backup`)."""
