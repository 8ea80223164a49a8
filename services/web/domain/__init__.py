"""The domain tables of every logical database, as unmanaged Django models, and their admin."""
