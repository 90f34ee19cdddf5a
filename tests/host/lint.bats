#!/usr/bin/env bats
# The test suites themselves: no assertion bats could not see fail.

load ../helpers

setup() { T=$(mktemp -d); LINT=$BATS_TEST_DIRNAME/../lint-bats.py; }
teardown() { rm -rf "$T"; }

@test "lint-bats: every suite and test library passes" {
	"$LINT" "$BATS_TEST_DIRNAME"/../*/*.bats "$BATS_TEST_DIRNAME"/../*.bash "$BATS_TEST_DIRNAME"/../vm/lib.bash
}

@test "lint-bats: an '&&' list and a bare wait are refused; quotes, conditions, subshells and pids are not" {
	# a sample suite (kept apart: its '&&' lines are what the lint must find)
	cp "$BATS_TEST_DIRNAME/lint-sample.txt" "$T/t.bats"
	run "$LINT" "$T/t.bats"
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(grep -c "^$T/t.bats:" <<<"$output")" -eq 4 ]
	# each reported with its line as written
	[[ "$output" == *"t.bats:2: $(sed -n 2p "$T/t.bats" | tr -d '\t')"* ]]
	[[ "$output" == *"t.bats:9: $(sed -n 9p "$T/t.bats" | tr -d '\t')"* ]]
	[[ "$output" == *"t.bats:10: wait"* ]]
	[[ "$output" == *"t.bats:13: ( sleep 1 ) & wait"* ]]
	[[ "$output" == *"2 line(s): a bare 'wait' also waits for bats' timeout countdown"* ]]
}
