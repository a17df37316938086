"""The database: tables, migrations and the named queries every other layer goes through."""
