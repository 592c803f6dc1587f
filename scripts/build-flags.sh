# Sourced by scripts/test.sh and scripts/soak.sh: the one package and
# feature selection of the debug build. lockstep-unsafe (the negative
# controls' server, debug only) needs lockstep's unsafe-test-switches
# feature; the plain lockstep binary built alongside refuses the switches.
# shellcheck disable=SC2034
test_build_flags=(--workspace --all-targets --features lockstep/unsafe-test-switches)
