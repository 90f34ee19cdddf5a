#!/usr/bin/env python3
"""The include rules of common/'s rooms (docs/structure.md), read from the
#include lines of common/ and cmd/: prints each violation, exits 1 if any.

  util    depends on nothing of ours
  image   on util
  kernel  on util
  host    on util and kernel
  common/*.[ch] (the composing files) and cmd/: on everything

A project header is included by its path under common/ ("util/log.h"):
a bare name would hide which room it comes from.
"""
import os
import re
import sys

ALLOWED = {
    'util': {'util'},
    'image': {'util', 'image'},
    'kernel': {'util', 'kernel'},
    'host': {'util', 'kernel', 'host'},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def room_of(path, top):
    """The room of a file under common/, or None for the composing files and cmd/."""
    rel = os.path.relpath(path, os.path.join(top, 'common'))
    parts = rel.split(os.sep)
    return parts[0] if len(parts) == 2 and not rel.startswith('..') else None


def check(top):
    bad = []
    common = os.path.join(top, 'common')
    rooms = sorted(d for d in os.listdir(common) if os.path.isdir(os.path.join(common, d)))
    for room in rooms:
        if room not in ALLOWED:
            bad.append(f'common/{room}/: a room the rules do not know (tests/include-rules.py)')
    files = []
    for base in ('common', 'cmd'):
        for dirpath, _, names in os.walk(os.path.join(top, base)):
            files += [os.path.join(dirpath, n) for n in sorted(names) if n.endswith(('.c', '.h'))]
    for path in files:
        room = room_of(path, top)
        rel = os.path.relpath(path, top)
        with open(path, encoding='utf-8') as f:
            text = f.read()
        for m in INCLUDE.finditer(text):
            inc = m.group(1)
            line = text.count('\n', 0, m.start()) + 1
            target = os.path.join(common, inc)
            if not os.path.isfile(target):
                bad.append(f'{rel}:{line}: "{inc}" is not a path under common/')
                continue
            inc_room = inc.split('/')[0] if '/' in inc else None
            if room is None:
                continue
            if inc_room is None:
                bad.append(f'{rel}:{line}: {room} includes "{inc}", a composing file')
            elif inc_room not in ALLOWED.get(room, set()):
                bad.append(f'{rel}:{line}: {room} includes "{inc}": {room} may include only '
                           + ', '.join(sorted(ALLOWED[room])))
    return bad


def main():
    top = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..')
    bad = check(top)
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
