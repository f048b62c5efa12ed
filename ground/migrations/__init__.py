"""The database's schema migrations, run by Alembic when `ground.db.connect` opens a database.

`versions/NNNN_*.py` brings the schema to version NNNN (revision "0001" is schema version 1). Each
migration states its own tables and columns, never the current definitions in `ground/db.py`,
so that every later migration starts from what the one before it made. To change the schema:
write the next revision by hand (Alembic's `op` functions, batch mode for SQLite), raise
`SCHEMA_VERSION` in `ground/db.py` and change its tables to match; the test suite checks that a
migrated database equals those definitions on SQLite and PostgreSQL.
"""
