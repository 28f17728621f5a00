-- Fencing is PostgreSQL's (migration 0005 there): one server holds a SQLite file, under its
-- home's lock. Kept so that both stores count the same schema versions.
SELECT 1;
