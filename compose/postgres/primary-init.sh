#!/bin/sh
# Runs once, when the primary's data directory is initialised (docker-entrypoint-initdb.d):
# a role for streaming replication and a pg_hba rule that lets it connect from the
# compose network. The read replica clones the primary with it (replica-entrypoint.sh).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
	--set=pw="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'pw';
SQL
echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
