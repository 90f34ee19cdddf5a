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

# Start tests/hostile_http.py on ports $1, $1 + 1 (another origin) and
# $1 + 2 (TLS), with a fresh certificate in folder $2; its pid in $server.
hostile_start() {
	local port=$1 dir=$2
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
		-subj /CN=localhost -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
	python3 "$BATS_TEST_DIRNAME/../hostile_http.py" "$port" $((port + 1)) $((port + 2)) \
		"$dir/cert.pem" "$dir/key.pem" >"$dir/server.log" 2>&1 &
	server=$!
	for _ in $(seq 300); do grep -q ready "$dir/server.log" && return 0; sleep 0.1; done
	echo "hostile_http.py did not start within 30 s: $(cat "$dir/server.log")" >&2
	return 1
}
