#!/bin/sh
# Test worker: rank $LATE_RANK sleeps $LATE_SECONDS before it runs the rest
# of its arguments (a worker that reaches the rendezvous late).
if [ "${RANK:-}" = "${LATE_RANK:-}" ]; then sleep "${LATE_SECONDS:-5}"; fi
exec "$@"
