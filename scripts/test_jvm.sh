# Sourced by test.sh and scripts/test_legacy.sh: the JVM options of every test JVM.
# The suite starts dozens of short JVMs (the local sessions, spark-submit drivers, the
# standalone clusters' daemons and executors, Spark Connect, the test hosts' JVMs) that
# each run for seconds on 2 cores: C2's JIT compiler threads and the parallel GC's threads
# cost them more than they give back. C1 only and the serial GC cut test.sh's first run
# from 814 s to 492 s on this 2-core machine (docs/DESIGN.md section 6). Every JVM picks
# JAVA_TOOL_OPTIONS up (and says so on stderr); options already set come after these, so
# they win; SPARKAE_TEST_JAVA_OPTIONS= (empty) leaves the JVMs' defaults.
SPARKAE_TEST_JAVA_OPTIONS="${SPARKAE_TEST_JAVA_OPTIONS--XX:TieredStopAtLevel=1 -XX:+UseSerialGC}"
if [ -n "$SPARKAE_TEST_JAVA_OPTIONS" ]; then
  export JAVA_TOOL_OPTIONS="$SPARKAE_TEST_JAVA_OPTIONS${JAVA_TOOL_OPTIONS:+ $JAVA_TOOL_OPTIONS}"
fi
