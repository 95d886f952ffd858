#!/bin/sh
# Test worker: writes its environment, sorted, to $ACCEL_TEST_OUT/env.<RANK>
# (env.none when the launcher gave it no RANK), then prints a line on each stream.
env | sort > "$ACCEL_TEST_OUT/env.${RANK:-none}"
echo "hello from ${RANK:-none}"
echo "warning from ${RANK:-none}" >&2
