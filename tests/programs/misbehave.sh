#!/bin/sh
# Test worker for supervision. Records its pid in $ACCEL_TEST_OUT/pid.<RANK>;
# rank $FAIL_RANK then fails after $FAIL_AFTER seconds, by exiting with
# $FAIL_STATUS or (when FAIL_SIGNAL is set) by sending itself that signal;
# every other rank sleeps, so it has to be stopped by the launcher.
echo $$ > "$ACCEL_TEST_OUT/pid.$RANK"
echo "$TORCHELASTIC_RESTART_COUNT" >> "$ACCEL_TEST_OUT/attempts.$RANK"
if [ "$RANK" = "${FAIL_RANK:--1}" ]; then
  sleep "${FAIL_AFTER:-0.3}"
  if [ -n "$FAIL_SIGNAL" ]; then kill -"$FAIL_SIGNAL" $$; sleep 5; fi
  exit "${FAIL_STATUS:-3}"
fi
if [ -n "$IGNORE_TERM" ]; then trap '' TERM; fi
# A child sleep would survive its shell: sleep in short steps instead.
i=0
while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
