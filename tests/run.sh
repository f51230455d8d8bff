#!/bin/sh
# Runs every test through prove: the unit tests (cmocka, printing TAP) and the
# shell tests (tests/integration, tests/e2e).  The last line is prove's
# summary.  One test: prove -v --exec '' tests/integration/10-counts.t
cd "$(dirname "$0")/.." || exit 1
export CMOCKA_MESSAGE_OUTPUT=TAP
exec prove --exec '' ${PROVE_FLAGS:-} build/tests/unit/test_* tests/integration/*.t tests/e2e/*.t
