-- Read-only access to the memory store for analysts (PostgreSQL).
--
-- Run once per database, as its owner or a superuser:
--     psql "$DATABASE_URL" -f memory_store/sql/readonly_role.sql
-- then give each analyst a login role that is a member of mbc_readonly:
--     CREATE ROLE alice LOGIN PASSWORD '…' IN ROLE mbc_readonly;
--     ALTER ROLE alice SET default_transaction_read_only = on;   -- optional second belt
--
-- Members can SELECT every table and view of the store (memory_growth_hourly, memory_growth_daily,
-- codebook_usage, source_activity, and the tables under them), including tables and views that
-- later migrations create (default privileges below; they apply to objects created by the role
-- that runs this script, so run it as the role that runs `mbc store migrate`). They cannot insert,
-- update, delete, truncate or create anything. Deleting documents must go through the store
-- (`mbc store delete`, DELETE /documents/{id}) so that the code counts follow.
--
-- Safe to run again.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mbc_readonly') THEN
        CREATE ROLE mbc_readonly NOLOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO mbc_readonly', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO mbc_readonly;
REVOKE CREATE ON SCHEMA public FROM mbc_readonly;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO mbc_readonly;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO mbc_readonly;
