#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make man`: build the bus1(7) man page from Documentation/bus1/bus1.rst with
# docutils' manpage writer, into build/man/bus1.7, and check it.
#
# 1. Every Documentation/bus1/*.rst must parse with docutils without a warning
#    (Sphinx's toctree directive, which plain docutils lacks, is accepted and
#    ignored), so the man page and the other documents stay valid rst.
# 2. bus1.rst is converted with rst2man (halting on warnings); without
#    rst2man, `python3 -m docutils --writer=manpage`; without docutils at all,
#    docutils from PyPI in a venv under $BUS1_CACHE/docutils-venv.
# 3. The page must render with man(1) (or groff) without a warning, with a
#    BUS1(7) header and its sections in the order of man-pages(7).
# 4. Every module parameter of bus1/bus1_main.rs is documented under
#    CONFIGURATION, with the default the code has.
# 5. The EXAMPLES program compiles against include/uapi and the C library
#    alone (scripts/man_example.py), into OUTDIR/bus1-man-example; the
#    guest runs it with the other examples (scripts/build-userspace.sh).
#
# Usage: scripts/man.sh [OUTDIR]   (default: build/man)
. "$(dirname "$0")/lib.sh"

out=${1:-$BUS1_TOP/build/man}
src=$BUS1_TOP/Documentation/bus1/bus1.rst
page=$out/bus1.7
DOCUTILS_VERSION=0.21.2
venv=$BUS1_CACHE/docutils-venv

# A Python interpreter that can import docutils, installing it if needed.
find_python() {
	local py
	for py in python3 "$venv/bin/python3"; do
		if command -v "$py" >/dev/null && "$py" -c 'import docutils' 2>/dev/null; then
			echo "$py"
			return
		fi
	done
	command -v python3 >/dev/null || die "neither docutils nor python3 found (install python3-docutils)"
	local plog
	plog=$(logfile pip-docutils)
	log "docutils not found; installing docutils $DOCUTILS_VERSION into $venv (pip output: $plog)"
	mkdir -p "$BUS1_CACHE"
	{ python3 -m venv "$venv" && "$venv/bin/python3" -m pip install "docutils==$DOCUTILS_VERSION"; } >"$plog" 2>&1 ||
		die "could not install docutils into $venv (install python3-docutils; log: $plog)"
	"$venv/bin/python3" -c 'import docutils' || die "docutils in $venv does not import"
	echo "$venv/bin/python3"
}

py=$(find_python)

# 1. Every document parses cleanly.
"$py" - "$BUS1_TOP"/Documentation/bus1/*.rst <<'EOF' || die "Documentation/bus1: rst does not parse cleanly"
import os
import sys
import docutils.core
import docutils.utils
from docutils.parsers.rst import Directive, directives


class TocTree(Directive):
    """Sphinx's toctree: every entry must name a document next to this one."""
    has_content = True
    option_spec = {'maxdepth': directives.nonnegative_int, 'hidden': directives.flag,
                   'caption': directives.unchanged, 'numbered': directives.flag}

    def run(self):
        here = os.path.dirname(self.state.document.current_source)
        for entry in self.content:
            entry = entry.strip()
            if entry and not os.path.isfile(os.path.join(here, entry + '.rst')):
                return [self.state.reporter.warning(
                    f'toctree entry {entry!r}: no such document', line=self.lineno)]
        return []


directives.register_directive('toctree', TocTree)
bad = 0
for path in sys.argv[1:]:
    with open(path, encoding='utf-8') as f:
        text = f.read()
    try:
        docutils.core.publish_doctree(
            text, source_path=path,
            settings_overrides={'report_level': 2, 'halt_level': 2})
    except docutils.utils.SystemMessage:
        # At halt_level: the message was reported already.
        bad += 1
sys.exit(1 if bad else 0)
EOF

# 2. The man page.
mkdir -p "$out"
rm -f "$page"
if command -v rst2man >/dev/null; then
	rst2man --halt=2 --report=2 "$src" "$page.tmp"
elif "$py" -m docutils --help >/dev/null 2>&1; then
	"$py" -m docutils --writer=manpage --halt=2 --report=2 "$src" "$page.tmp"
else
	"$py" - "$src" "$page.tmp" <<'EOF'
import sys
import docutils.core
docutils.core.publish_file(source_path=sys.argv[1], destination_path=sys.argv[2],
                           writer_name='manpage',
                           settings_overrides={'report_level': 2, 'halt_level': 2})
EOF
fi || { rm -f "$page.tmp"; die "$src: rst2man failed"; }
mv "$page.tmp" "$page"

# 3. It renders, without warnings, as a section 7 page with the usual sections.
err=$(mktemp)
trap 'rm -f "$err"' EXIT
if command -v man >/dev/null; then
	text=$(MANWIDTH=80 MANPAGER=cat man -l "$page" 2>"$err")
elif command -v groff >/dev/null; then
	text=$(groff -man -Tutf8 -rLL=80n "$page" 2>"$err")
else
	die "neither man nor groff found: cannot check that $page renders"
fi
if command -v groff >/dev/null; then
	groff -man -Tutf8 -ww -z "$page" 2>>"$err"
fi
if [ -s "$err" ]; then
	cat "$err" >&2
	die "$page: warnings while rendering"
fi
# Here-strings, not pipes: a reader that stops early (sed q, head) would fail
# a pipe from printf with SIGPIPE under pipefail once the page exceeds a pipe
# buffer.
head=$(sed -n '/[^[:space:]]/{p;q}' <<<"$text")
case $head in
BUS1\(7\)*) ;;
*) die "$page: header is '$head', not BUS1(7)" ;;
esac
# man-pages(7) order; every one of these must be there.
want=(NAME SYNOPSIS CONFIGURATION DESCRIPTION 'RETURN VALUE' ERRORS FILES VERSIONS STANDARDS NOTES BUGS
	EXAMPLES 'SEE ALSO')
have=$(printf '%s\n' "$text" | grep -x '[A-Z][A-Z ]*[A-Z]' || true)
[ "$have" = "$(printf '%s\n' "${want[@]}")" ] ||
	die "$page: sections are $(echo $have), want ${want[*]} (man-pages(7) order)"

# 4. The module parameters and their defaults.
python3 - "$BUS1_TOP/bus1/bus1_main.rs" "$src" <<'EOF' || die "$src: CONFIGURATION does not match the module parameters"
import re
import sys
code = open(sys.argv[1]).read()
params = re.search(r"\bparams:\s*\{(.*?)\n    \},", code, re.S)
if not params:
    sys.exit("bus1_main.rs: no params block in module!")
found = re.findall(r"^\s*(\w+):\s*\w+\s*\{\s*default:\s*(\d+),", params.group(1), re.M)
if not found:
    sys.exit("bus1_main.rs: no parameters found")
page = open(sys.argv[2]).read()
conf = re.search(r"^CONFIGURATION\n=+\n(.*?)^DESCRIPTION\n=+\n", page, re.S | re.M)
if not conf:
    sys.exit("no CONFIGURATION section before DESCRIPTION")
bad = 0
for name, default in found:
    if not re.search(rf"^``{name}`` \(default {default}\)$", conf.group(1), re.M):
        print(f"module parameter {name} (default {default}) is not documented as "
              f"``{name}`` (default {default}) under CONFIGURATION", file=sys.stderr)
        bad = 1
print(f"{len(found)} module parameters documented under CONFIGURATION", file=sys.stderr)
sys.exit(bad)
EOF

# 5. The EXAMPLES program.
python3 "$BUS1_TOP/scripts/man_example.py" --build "$out/bus1-man-example" ||
	die "$src: the EXAMPLES program does not build"
sed -n 1,12p <<<"$text"
log "$page: $(printf '%s\n' "$text" | wc -l) lines rendered ($(du -h "$page" | cut -f1))"
