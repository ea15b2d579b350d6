#!/bin/sh
# Installs the Debian packages of scripts/packages.txt (the one list of what
# tern's build and tests use), skipping what is already there. Safe to run
# repeatedly; run as root (or with sudo available).
set -euf    # -f: the list's [flags] are words, not patterns

LIST="$(cd "$(dirname "$0")" && pwd)/packages.txt"

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# present WORD...: each command (a bare word) and Python module (py:NAME)
# of a list line is already there, from Debian or elsewhere.
present() {
	for w in "$@"; do
		case $w in
		py:*) python3 -c "import ${w#py:}" </dev/null 2>/dev/null || return 1 ;;
		*:* | \[*) ;;
		*) command -v "$w" >/dev/null 2>&1 || return 1 ;;
		esac
	done
}

missing=""
pymods=""
while read -r pkg rest; do
	case $pkg in '' | '#'*) continue ;; esac
	rest=${rest%%#*}
	case " $rest " in
	*" [bench] "* | *" [non-root] "*) continue ;;
	esac
	case " $rest " in
	*" [any-source] "*)
		for w in $rest; do
			case $w in py:*) pymods="$pymods ${w#py:}" ;; esac
		done
		# e.g. pytest from pip, a JDK 17 or Maven not from Debian
		present $rest && continue
		;;
	esac
	installed "$pkg" || missing="$missing $pkg"
done <"$LIST"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=$(echo $missing)
if [ -n "$missing" ]; then
	echo "install-deps: installing $missing"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# Debian's Python packages serve Debian's python3 only: a python3 of its own
# (pyenv, a virtualenv) must bring its own pytest.
for m in $pymods; do
	if ! python3 -c "import $m" 2>/dev/null; then
		echo "install-deps: python3 ($(command -v python3)) cannot import $m;" \
			"install it for that python3 (python3 -m pip install $m)" >&2
		exit 1
	fi
done
