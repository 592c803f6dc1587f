# Sourced by scripts/test.sh and scripts/soak.sh: the one package and
# feature selection of the debug build. lockstep-unsafe (the negative
# controls' server, debug only) needs lockstep's unsafe-test-switches
# feature; the plain lockstep binary built alongside refuses the switches.
# shellcheck disable=SC2034
test_build_flags=(--workspace --all-targets --features lockstep/unsafe-test-switches)
# The one package selection of release builds (cluster.sh, the benchmark
# scripts, kazoo_suite.sh): cargo unifies dependency features over the
# packages it builds together, so building lockstep alone and then with
# lockstep-bench would recompile the server crates each time.
release_build_flags=(--release -p lockstep -p lockstep-bench)
