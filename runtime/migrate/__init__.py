"""SQLite -> PostgreSQL migration that loses nothing and proves it (`domos migrate`)."""
