#!/usr/bin/env bats
# The test suites themselves: no assertion bats could not see fail.

load ../helpers

setup() { T=$(mktemp -d); LINT=$BATS_TEST_DIRNAME/../lint-bats.py; }
teardown() { rm -rf "$T"; }

@test "lint-bats: every suite and test library passes" {
	"$LINT" "$BATS_TEST_DIRNAME"/../*/*.bats "$BATS_TEST_DIRNAME"/../*.bash "$BATS_TEST_DIRNAME"/../vm/lib.bash
}

@test "lint-bats: an '&&' list is refused; quotes, conditions and subshells are not" {
	# (the sample's first line is written apart: bats would take it for a test here)
	echo '@''test "x" {' >"$T/t.bats"
	cat >>"$T/t.bats" <<'BATS'
	[ "$a" = 1 ] && [ "$b" = 2 ]
	echo "a && b" 'c && d'
	x=$(cd / && pwd)
	(cd / && ls)
	if [ -e x ] && [ -e y ]; then :; fi
	for i in 1 2; do [ -e x ] && break; done
	run sh -c 'true && false'
	false && true   # && in a comment too
}
BATS
	run "$LINT" "$T/t.bats"
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(grep -c "^$T/t.bats:" <<<"$output")" -eq 2 ]
	[[ "$output" == *"t.bats:2: [ \"\$a\" = 1 ] && [ \"\$b\" = 2 ]"* ]]
	[[ "$output" == *"t.bats:9: false && true"* ]]
}
