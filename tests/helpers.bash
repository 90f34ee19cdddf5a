# Shared by the bats suites.
#   UBLK_BIN  folder of the tools under test

B=${UBLK_BIN:-$BATS_TEST_DIRNAME/../../build}

# run_mustfail CODE "message part" cmd...: cmd exits CODE and says message.
run_mustfail() {
	local code=$1 msg=$2
	shift 2
	run "$@"
	if [ "$status" -ne "$code" ]; then
		echo "expected exit $code, got $status from: $*" >&2
		echo "output: $output" >&2
		return 1
	fi
	if [[ "$output" != *"$msg"* ]]; then
		echo "expected message containing '$msg' from: $*" >&2
		echo "output: $output" >&2
		return 1
	fi
	# one line, prefixed by the tool's name
	if [ "$(printf '%s\n' "$output" | wc -l)" -ne 1 ] || [[ "$output" != ublk-* ]]; then
		echo "expected one 'tool: message' line, got: $output" >&2
		return 1
	fi
}

as_nobody() {
	setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}

# Root that cannot bypass file permissions: makes "unreadable" testable.
root_without_dac() {
	setpriv --inh-caps=-dac_override,-dac_read_search \
		--bounding-set=-dac_override,-dac_read_search "$@"
}

# Only the standard error of a command (for tools that also print results).
stderr_of() {
	"$@" 2>&1 >/dev/null
}
