#!/usr/bin/python3
"""Reject test lines whose failure bats would not see.

bats runs a test with `set -e`, and bash ignores a failing command on the
left of `&&` (and `||`'s left side by design): `[ "$x" = 1 ] && [ ... ]`
passes whatever $x is unless it is the test's last line. So in every
.bats file and test library, a command list joined by `&&` outside
quotes, `$(...)`, a subshell or a condition (`if`, `while`, `until`, a
`for` one-liner) is an error: write one assertion per line.

A line that is `! COMMAND` in a test is an error unless it is the
test's last: bash's `set -e` never stops on a negated command, so
`! grep -q secret log` passes whether or not grep finds it. Write
`run COMMAND` and check `$status`.

A bare `wait` is an error too: with BATS_TEST_TIMEOUT set, bats runs its
timeout countdown as a background job of the test's shell, so a `wait`
without operands waits for the countdown and the test "times out" after
its work is long done. Wait for the test's own pids (`wait "$pid"`).

    tests/lint-bats.py FILE...      exit 1 listing FILE:LINE: text
"""
import re
import sys

CONTROL = re.compile(r"^(if|elif|while|until|for|\(|!)\b|^\(")
BARE_WAIT = re.compile(r"(^|[;&|({]\s*|\b(then|do|else)\s+)wait\s*($|[;&|)}])")
AND = "join commands with '&&': bats would not see the left side fail; write one assertion per line"
NOT = ("'! COMMAND' does not fail a test (set -e ignores a negated command) unless it is "
       "the test's last line: 'run COMMAND' and check $status")
WAIT = ("a bare 'wait' also waits for bats' timeout countdown (BATS_TEST_TIMEOUT): "
        "wait for the test's own pids")


def unquoted(line):
    """The line with quoted text, $(...) and `...` removed."""
    out, i, depth, quote = [], 0, 0, None
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = None
            i += 1
            continue
        if c == "\\":
            i += 2
            continue
        if c in "'\"`":
            quote = c
        elif line.startswith("$(", i):
            depth += 1
            i += 2
            continue
        elif c == "(" and depth:
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif c == "#" and (i == 0 or line[i - 1] in " \t") and not depth:
            break
        elif not depth:
            out.append(c)
        i += 1
    return "".join(out)


def check(path):
    bad = []
    heredoc = None
    test_lines = None       # (n, line) of the code lines of the test being read
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if heredoc:
                if line.strip() == heredoc:
                    heredoc = None
                continue
            if re.match(r"^@test .*\{\s*$", line):
                test_lines = []
            elif line == "}" and test_lines is not None:
                for m, text in test_lines[:-1]:
                    if text.startswith("! "):
                        bad.append(("%s:%d: %s" % (path, m, text), NOT))
                test_lines = None
            elif test_lines is not None and unquoted(line).strip():
                test_lines.append((n, line.strip()))
            # a here-document's word is a name; $((1 << 20)) and <<< are none
            m = re.search(r"(?<!<)<<-?\s*['\"]?([A-Za-z_]\w*)['\"]?", line)
            if m and re.search(r"(?<!<)<<(?!<)", unquoted(line)):
                heredoc = m.group(1)
            text = unquoted(line).strip()
            # quoted words are operands: keep a trace of them
            if BARE_WAIT.search(unquoted(re.sub(r'"[^"]*"|\'[^\']*\'', "Q", line)).strip()):
                bad.append(("%s:%d: %s" % (path, n, line.strip()), WAIT))
            if not text or CONTROL.match(text):
                continue
            if "&&" in text:
                bad.append(("%s:%d: %s" % (path, n, line.strip()), AND))
    return bad


def main(paths):
    bad = [b for p in paths for b in check(p)]
    for line, _ in bad:
        print(line)
    for why in sorted(set(w for _, w in bad)):
        print("lint-bats: %d line(s): %s" % (sum(1 for _, w in bad if w == why), why),
              file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
