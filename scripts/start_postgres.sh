#!/bin/sh
# Start the local PostgreSQL 15 cluster and make the test role and database, idempotently.
# Prints the SQLAlchemy URL the storage tests read from NETIDS_TEST_PG_URL.
set -eu
VERSION=${PG_VERSION:-15}
CLUSTER=${PG_CLUSTER:-main}
pg_lsclusters | grep -q "^$VERSION *$CLUSTER .*online" || pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
for _ in 1 2 3 4 5 6 7 8 9 10; do
    su postgres -c "pg_isready -q" && break
    sleep 0.5
done
su postgres -c "psql -v ON_ERROR_STOP=1 -q" >/dev/null <<'SQL'
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'netids') THEN
        CREATE ROLE netids LOGIN PASSWORD 'netids';
    END IF;
END $$;
-- test sessions make a private database each, so parallel runs never share tables
ALTER ROLE netids CREATEDB;
SELECT 'CREATE DATABASE netids_test OWNER netids'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'netids_test')\gexec
SQL
echo "postgresql+psycopg://netids:netids@127.0.0.1:5432/netids_test"
