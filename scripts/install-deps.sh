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
pymods=""   # MODULE, or MODULE=PIPNAME for a line with pip:PIPNAME
while read -r pkg rest; do
	case $pkg in '' | '#'*) continue ;; esac
	rest=${rest%%#*}
	case " $rest " in
	*" [bench] "* | *" [non-root] "*) continue ;;
	esac
	case " $rest " in
	*" [any-source] "*)
		pip=""
		for w in $rest; do
			case $w in pip:*) pip=${w#pip:} ;; esac
		done
		for w in $rest; do
			case $w in py:*) pymods="$pymods ${w#py:}${pip:+=$pip}" ;; esac
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
# (pyenv, a virtualenv) gets a line's pip:NAME from PyPI, and must bring
# the other modules (pytest) itself.
for m in $pymods; do
	mod=${m%%=*}
	python3 -c "import $mod" </dev/null 2>/dev/null && continue
	case $m in
	*=*)
		pip=${m#*=}
		echo "install-deps: python3 ($(command -v python3)) cannot import $mod: installing $pip with pip"
		PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
			python3 -m pip install -q "$pip" </dev/null || true
		python3 -c "import $mod" </dev/null 2>/dev/null && continue
		echo "install-deps: python3 ($(command -v python3)) still cannot import $mod" \
			"after python3 -m pip install $pip" >&2
		;;
	*)
		echo "install-deps: python3 ($(command -v python3)) cannot import $mod;" \
			"install it for that python3 (python3 -m pip install $mod)" >&2
		;;
	esac
	exit 1
done
