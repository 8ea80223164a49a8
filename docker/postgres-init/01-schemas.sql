-- Run once by the postgres image on a fresh data volume, as POSTGRES_USER in POSTGRES_DB.
-- One schema per logical database group (runtime/logical_databases.py); `domos db upgrade`
-- creates the tables. IF NOT EXISTS keeps it harmless next to the migrations.
CREATE SCHEMA IF NOT EXISTS main;
CREATE SCHEMA IF NOT EXISTS advert;
CREATE SCHEMA IF NOT EXISTS contract;
CREATE SCHEMA IF NOT EXISTS bot;
CREATE SCHEMA IF NOT EXISTS django;
