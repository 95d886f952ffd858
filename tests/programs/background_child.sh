#!/bin/sh
# A worker that starts a child of its own and waits for it (issue 20): the
# child must end with the job. Writes its own pid and the child's to
# $ACCEL_TEST_OUT/pid.$RANK and child.$RANK; rank $FAIL_RANK exits 3 after
# both files are written.
sleep 300 &
echo $! >"$ACCEL_TEST_OUT/child.$RANK.tmp" && mv "$ACCEL_TEST_OUT/child.$RANK.tmp" "$ACCEL_TEST_OUT/child.$RANK"
echo $$ >"$ACCEL_TEST_OUT/pid.$RANK"
if [ "${FAIL_RANK:-none}" = "$RANK" ]; then
  sleep 1
  exit 3
fi
wait
