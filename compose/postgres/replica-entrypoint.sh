#!/bin/sh
# The read replica: on first start, clone the primary with pg_basebackup -R (which
# writes standby.signal and primary_conninfo), then run as a hot standby that
# streams from the primary. Runs as the postgres user (compose `user: postgres`).
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	until pg_isready -q -h "$PRIMARY_HOST" -p 5432; do
		echo "waiting for the primary at $PRIMARY_HOST"
		sleep 1
	done
	# pg_basebackup wants an empty directory it may write.
	find "$PGDATA" -mindepth 1 -delete
	pg_basebackup -h "$PRIMARY_HOST" -p 5432 -U "$REPLICATION_USER" -D "$PGDATA" \
		-R -X stream -c fast --progress
	chmod 0700 "$PGDATA"
fi
exec postgres -D "$PGDATA" -c hot_standby=on -c max_connections=300 -c shared_buffers=256MB \
	-c hot_standby_feedback=on
