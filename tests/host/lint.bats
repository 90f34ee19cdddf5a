#!/usr/bin/env bats
# The test suites themselves: no assertion bats could not see fail.

load ../helpers

setup() { T=$(mktemp -d); LINT=$BATS_TEST_DIRNAME/../lint-bats.py; }
teardown() { rm -rf "$T"; }

@test "lint-bats: every suite and test library passes" {
	"$LINT" "$BATS_TEST_DIRNAME"/../*/*.bats "$BATS_TEST_DIRNAME"/../*.bash "$BATS_TEST_DIRNAME"/../vm/lib.bash
}

@test "lint-bats: an '&&' list, a bare wait and a negated command are refused; quotes, conditions, subshells and pids are not" {
	# a sample suite (kept apart: its '&&' lines are what the lint must find)
	cp "$BATS_TEST_DIRNAME/lint-sample.txt" "$T/t.bats"
	run "$LINT" "$T/t.bats"
	echo "$output"
	[ "$status" -eq 1 ]
	[ "$(grep -c "^$T/t.bats:" <<<"$output")" -eq 6 ]
	# each reported with its line as written
	[[ "$output" == *"t.bats:2: $(sed -n 2p "$T/t.bats" | tr -d '\t')"* ]]
	[[ "$output" == *"t.bats:9: $(sed -n 9p "$T/t.bats" | tr -d '\t')"* ]]
	[[ "$output" == *"t.bats:10: wait"* ]]
	[[ "$output" == *"t.bats:13: ( sleep 1 ) & wait"* ]]
	[[ "$output" == *"2 line(s): a bare 'wait' also waits for bats' timeout countdown"* ]]
	# a negated command, but not in a condition or on the test's last line;
	# a shift in arithmetic is no here-document hiding the lines after it
	[[ "$output" == *"t.bats:18: ! grep -q secret log"* ]]
	[[ "$output" == *"t.bats:20: $(sed -n 20p "$T/t.bats" | tr -d '\t')"* ]]
	[[ "$output" == *"1 line(s): '! COMMAND' does not fail a test"* ]]
}
