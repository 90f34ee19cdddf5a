#!/usr/bin/env bats
# The library's rooms and who may include whom (docs/structure.md), checked
# on the real tree, and shown to catch each kind of violation on a copy.

load ../helpers

setup() {
	T=$(mktemp -d)
	TOP=$BATS_TEST_DIRNAME/../..
	RULES=$TOP/tests/include-rules.py
}
teardown() { rm -rf "$T"; }

@test "include rules: util, image, kernel, host and the top keep to their rooms" {
	run "$RULES" "$TOP"
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}

@test "include rules: a violation of each kind is named with its file and line" {
	mkdir -p "$T/common" "$T/cmd"
	cp -r "$TOP"/common/util "$TOP"/common/image "$TOP"/common/kernel "$TOP"/common/host "$T/common/"
	cp "$TOP"/common/*.[ch] "$T/common/"
	printf '#include "image/layer.h"\n' >>"$T/common/kernel/ctrl.c"
	printf '#include "kernel/ctrl.h"\n' >>"$T/common/image/diff.c"
	printf '#include "host/state.h"\n' >>"$T/common/util/log.c"
	printf '#include "server.h"\n' >>"$T/common/host/pool.c"
	printf '#include "log.h"\n' >>"$T/common/host/state.c"
	mkdir "$T/common/extra"
	run "$RULES" "$T"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"common/kernel/ctrl.c:$(wc -l <"$T/common/kernel/ctrl.c"): kernel includes \"image/layer.h\""* ]]
	[[ "$output" == *"common/image/diff.c:$(wc -l <"$T/common/image/diff.c"): image includes \"kernel/ctrl.h\""* ]]
	[[ "$output" == *"common/util/log.c:$(wc -l <"$T/common/util/log.c"): util includes \"host/state.h\""* ]]
	[[ "$output" == *"common/host/pool.c:$(wc -l <"$T/common/host/pool.c"): host includes \"server.h\", a composing file"* ]]
	[[ "$output" == *"common/host/state.c:$(wc -l <"$T/common/host/state.c"): \"log.h\" is not a path under common/"* ]]
	[[ "$output" == *"common/extra/: a room the rules do not know"* ]]
	[ "$(wc -l <<<"$output")" -eq 6 ]
}
