"""scripts/packages.txt is complete and installed.

A fresh machine gets only what scripts/install-deps.sh installs from that
list, so:

1. every external command, Python import, pkg-config module and library
   that the build, the test suites and the scripts they run use must be
   provided by a line of the list (found by reading the sources: Python by
   its syntax tree, shell scripts and Makefile recipes by their command
   words, CMake files, the C tests' system() calls);
2. swaks must really do TLS, both STARTTLS and --tls-on-connect: its TLS
   module is only a Recommends of the swaks package, which
   --no-install-recommends leaves out;
3. every package of the list must be installed and provide what it says.

This file sits at the top of tests/ so that `make test` runs it once (the
integration suite, which runs three times, is a directory below).
"""
import ast
import ctypes.util
import fnmatch
import importlib.util
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIST = REPO / "scripts" / "packages.txt"
FLAGS = {"[any-source]", "[non-root]", "[bench]"}
KINDS = ("py", "perl", "pc", "lib")


# --------------------------------------------------------------------------
# the list

class Package:
    def __init__(self, name, provides, flags, pip):
        self.name, self.provides, self.flags, self.pip = name, provides, flags, pip


def read_list():
    packages = []
    for n, raw in enumerate(LIST.read_text().splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        flags = {w for w in words[1:] if w.startswith("[")}
        unknown = flags - FLAGS
        assert not unknown, "scripts/packages.txt:%d: unknown flag %s" % (
            n, ", ".join(sorted(unknown)))
        # pip:NAME is how install-deps.sh brings the line's Python module to
        # a python3 that is not Debian's: not something the package provides
        pip = [w[4:] for w in words[1:] if w.startswith("pip:")]
        provides = [w for w in words[1:] if not w.startswith(("[", "pip:"))]
        for p in provides:
            kind = p.split(":", 1)[0] if ":" in p else None
            assert kind is None or kind in KINDS, \
                "scripts/packages.txt:%d: unknown kind in %r" % (n, p)
        if pip:
            modules = [p for p in provides if p.startswith("py:")]
            assert len(pip) == 1 and pip[0] and len(modules) == 1 and "[any-source]" in flags, (
                "scripts/packages.txt:%d: pip:NAME goes once on an [any-source] line with one "
                "py:MODULE" % n)
        packages.append(Package(words[0], provides, flags, pip[0] if pip else None))
    return packages


def provider_map(packages, bench):
    """'curl' / 'py:pytest' / ... -> the package providing it."""
    out = {}
    for p in packages:
        if "[bench]" in p.flags and not bench:
            continue
        for item in p.provides:
            out.setdefault(item, p)
    return out


# --------------------------------------------------------------------------
# shell: the command words of a script or a Makefile recipe

SH_RESERVED = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until",
               "for", "in", "case", "esac", "!", "{", "}"}
# dash builtins: no package needed
SH_BUILTINS = {".", ":", "[", "alias", "bg", "break", "cd", "command", "continue", "echo",
               "eval", "exec", "exit", "export", "false", "fg", "getopts", "hash", "jobs",
               "kill", "local", "printf", "pwd", "read", "readonly", "return", "set",
               "shift", "test", "times", "trap", "true", "type", "ulimit", "umask",
               "unalias", "unset", "wait"}
OPERATORS = ("&&", "||", ";;", ";", "|", "&", "(", ")", "\n")


def _balanced(text, i, open_, close):
    """Index just past the `close` that matches the `open_` before text[i]."""
    depth, q = 1, None
    while i < len(text):
        c = text[i]
        if q:
            if c == "\\" and q == '"':
                i += 1
            elif c == q:
                q = None
        elif c in "'\"":
            q = c
        elif c == "\\":
            i += 1
        elif text.startswith(open_, i):
            depth += 1
            i += len(open_) - 1
        elif text.startswith(close, i):
            depth -= 1
            if depth == 0:
                return i + len(close)
            i += len(close) - 1
        i += 1
    return len(text)


def sh_tokens(text, subs):
    """Words and operators of shell text; the text of each command
    substitution goes to `subs` (and stands as one word)."""
    tokens, word, q, i = [], "", None, 0
    have = False

    def flush():
        nonlocal word, have
        if have:
            tokens.append(word)
        word, have = "", False

    while i < len(text):
        c = text[i]
        if q == "'":
            if c == "'":
                q = None
            else:
                word += c
            i += 1
            continue
        if c == "\\" and i + 1 < len(text):
            if text[i + 1] == "\n":
                i += 2
                continue
            word, have = word + text[i + 1], True
            i += 2
            continue
        if text.startswith("$((", i):
            j = _balanced(text, i + 3, "((", "))")
            sh_tokens(text[i + 3:j - 2], subs)     # only the $(...) inside count
            word, have, i = word + "$(())", True, j
            continue
        if text.startswith("${", i):
            j = _balanced(text, i + 2, "{", "}")
            word, have, i = word + text[i:j], True, j
            continue
        if text.startswith("$(", i):
            j = _balanced(text, i + 2, "(", ")")
            subs.append(text[i + 2:j - 1])
            word, have, i = word + "$()", True, j
            continue
        if c == "`":
            j = text.find("`", i + 1)
            j = len(text) if j < 0 else j
            subs.append(text[i + 1:j])
            word, have, i = word + "$()", True, j + 1
            continue
        if q == '"':
            if c == '"':
                q = None
            else:
                word += c
            i += 1
            continue
        if c in "'\"":
            q, have = c, True
            i += 1
            continue
        if c == "#" and not have:
            j = text.find("\n", i)
            i = len(text) if j < 0 else j
            continue
        if c in " \t":
            flush()
            i += 1
            continue
        if c in "<>":
            # a redirection, one token: 2>, >>, <<, >&2, 2>&1 (its target,
            # when not a descriptor, is the next word)
            m = re.compile(r"[<>]+(&[0-9-]+)?").match(text, i)
            if not (have and word.isdigit()):
                flush()
            tokens.append(word + m.group(0))
            word, have, i = "", False, m.end()
            continue
        op = next((o for o in OPERATORS if text.startswith(o, i)), None)
        if op:
            flush()
            tokens.append(op)
            i += len(op)
            continue
        word, have = word + c, True
        i += 1
    flush()
    return tokens


def strip_heredocs(text):
    out, end = [], None
    for line in text.split("\n"):
        if end is not None:
            if line.strip() == end:
                end = None
            out.append("")
            continue
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if m and "<<<" not in line:
            end = m.group(1)
        out.append(line)
    return "\n".join(out)


def sh_assignments(text):
    """VAR -> the literal values assigned to it in the script."""
    out = {}
    for m in re.finditer(r"(?:^|[\s;])([A-Za-z_]\w*)=(\"[^\"]*\"|'[^']*'|[^\s;]*)", text):
        out.setdefault(m.group(1), []).append(m.group(2).strip("'\""))
    return out


def sh_commands(text):
    """[(command, rest of its words)] for every simple command in the text.
    A command word that is a variable counts as each literal value it is
    assigned in the script (one that may be empty also lets the next word
    count); words with a '/' are the project's own programs and scripts."""
    text = strip_heredocs(text)
    variables = sh_assignments(text)
    functions = set(re.findall(r"^\s*([A-Za-z_][\w-]*)\s*\(\)", text, re.M))
    found, pending = [], [text]
    while pending:
        subs = []
        tokens = sh_tokens(pending.pop(), subs)
        pending.extend(subs)
        at_cmd, skip_to, in_pattern, prev = True, None, False, None
        i = 0
        while i < len(tokens):
            t = tokens[i]
            i += 1
            if skip_to:
                if t in skip_to:
                    skip_to = None
                    at_cmd = True
                    if t == "in" and prev == "case":
                        in_pattern = True
                continue
            if t in OPERATORS:
                if t == ")" and in_pattern:
                    in_pattern = False
                elif t == ";;":
                    in_pattern = True
                at_cmd = True
                continue
            if t == "esac":
                in_pattern = False
                continue
            if in_pattern or not at_cmd:
                continue
            if t in ("case", "for"):
                prev, skip_to = t, ({"in"} if t == "case" else {";", "\n", "do"})
                continue
            if t in SH_RESERVED:
                continue
            if re.match(r"^\d*[<>]", t):
                if re.match(r"^\d*[<>]+$", t):
                    i += 1          # the redirection's target
                continue
            if re.match(r"^[A-Za-z_]\w*=", t):
                continue
            if t == "exec":
                continue
            words, j = [], i
            while j < len(tokens) and tokens[j] not in OPERATORS:
                words.append(tokens[j])
                j += 1
            at_cmd = False
            m = re.match(r"^\$\{?([A-Za-z_]\w*)(?::?-([^}]*))?\}?$", t)
            if m:
                values = list(variables.get(m.group(1), []))
                if m.group(2) is not None:
                    values.append(m.group(2))
                for v in values:
                    first = v.split()[0] if v.split() else ""
                    if first and "$" not in first and "/" not in first:
                        found.append((first, v.split()[1:] + words))
                if not values or any(not v.split() for v in values):
                    at_cmd = True   # an empty value: the next word is the command
                continue
            if "/" in t or "$" in t or t in functions:
                continue
            found.append((t, words))
    return found


def sh_needs(commands):
    """Command names (and py:MODULE for `python3 -m MODULE`) of sh_commands."""
    out = []
    for cmd, args in commands:
        if cmd in SH_BUILTINS:
            if cmd == "command" and args[:1] != ["-v"] and args:
                out.append(args[0])
            continue
        out.append(cmd)
        if cmd.startswith("python") and args[:1] == ["-m"] and len(args) > 1:
            out.append("py:" + args[1])
    return out


def makefile_recipes(text):
    """The recipe lines of a Makefile, its simple variables expanded."""
    text = text.replace("\\\n", " ")
    variables = {"MAKE": "make", "CURDIR": str(REPO)}
    for m in re.finditer(r"^(?:export\s+)?([A-Za-z_]\w*)\s*[?:]?=\s*(.*)$", text, re.M):
        variables.setdefault(m.group(1), m.group(2).strip())
    lines = []
    for line in text.split("\n"):
        if line.startswith("\t"):
            for _ in range(5):
                line = re.sub(r"\$\(([A-Za-z_]\w*)\)",
                              lambda m: variables.get(m.group(1), ""), line)
            lines.append(line.strip().lstrip("@-"))
    return lines


# --------------------------------------------------------------------------
# Python: commands run, tools looked up, modules imported, libraries loaded

SUBPROCESS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}
LOOKUPS = {"which"}
OS_SHELL = {"system", "popen"}


def _name(node):
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _argv_programs(node, assigns, depth=0):
    """The programs an argv expression can name: "x" of ["x", ...], of
    ["x", ...] + more, of a variable assigned such a list in the file, or of
    a first element that is a variable assigned a string; a command string
    gives the commands it runs. [(program, argv node)]; empty when the
    program is none of these (the project's own binaries, a looked-up path)."""
    if depth > 4:
        return []
    if isinstance(node, ast.BinOp):
        return _argv_programs(node.left, assigns, depth + 1)
    if isinstance(node, ast.Name):
        return [p for v in assigns.get(node.id, []) for p in _argv_programs(v, assigns, depth + 1)]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [(c, None) for c in sh_needs(sh_commands(node.value))]
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        first = node.elts[0]
        values = [first] if not isinstance(first, ast.Name) else assigns.get(first.id, [])
        return [(v.value, node) for v in values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return []


def _constants(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [e.value for e in node.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def python_wrappers(trees):
    """Functions that pass a parameter on as subprocess's argv, run(cmd), or
    to shutil.which, require_tool(name): their callers name the program.
    Returns (argv wrappers, lookup wrappers, the calls inside them)."""
    wrappers, lookups, passed_on = set(), set(LOOKUPS), set()
    for tree in trees:
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            params = {a.arg for a in fn.args.args}
            for c in ast.walk(fn):
                if not (isinstance(c, ast.Call) and c.args and isinstance(c.args[0], ast.Name)
                        and c.args[0].id in params):
                    continue
                if _name(c.func) in SUBPROCESS:
                    wrappers.add(fn.name)
                    passed_on.add(c)
                elif _name(c.func) in LOOKUPS:
                    lookups.add(fn.name)
                    passed_on.add(c)
    return wrappers, lookups, passed_on


def python_needs(path, tree, wrapped, local_modules):
    """[(need, line)] of one Python file; need is a command name, py:MODULE,
    lib:NAME, or '?' + text for a call that cannot be read."""
    wrappers, lookups, passed_on = wrapped
    out = []
    # loop variables bound to literal strings, for t in ("java", "mvn"), and
    # what each name is assigned anywhere in the file
    loops, assigns = {}, {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name):
            loops.setdefault(node.target.id, []).extend(_constants(node.iter))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    assigns.setdefault(t.id, []).append(node.value)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append(("py:" + a.name.split(".")[0], node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(("py:" + node.module.split(".")[0], node.lineno))
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            if not node.args or node in passed_on:
                continue
            arg = node.args[0]
            if name in lookups:
                names = _constants(arg) or (loops.get(arg.id) if isinstance(arg, ast.Name) else [])
                out.extend((n, node.lineno) for n in (names or ["?" + ast.unparse(arg)]))
            elif name == "find_library":
                names = _constants(arg) or ["?" + ast.unparse(arg)]
                out.extend(("lib:" + n if n[0] != "?" else n, node.lineno) for n in names)
            elif name in SUBPROCESS or name in wrappers or (
                    name in OS_SHELL and isinstance(node.func, ast.Attribute)
                    and _name(node.func.value) == "os"):
                for prog, argv in _argv_programs(arg, assigns):
                    out.append((prog, node.lineno))
                    rest = _constants(ast.List(elts=argv.elts[1:3])) if argv else []
                    if prog.startswith("python") and rest[:1] == ["-m"] and len(rest) > 1:
                        out.append(("py:" + rest[1], node.lineno))
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    return [(n, line) for n, line in out
            if not (n.startswith("py:") and (n[3:] in stdlib or n[3:] in local_modules))]


# --------------------------------------------------------------------------
# the files of `make test` (and of `make bench`)

def _rel(path):
    return str(path.relative_to(REPO))


def repo_files(*patterns):
    """The source files matching the patterns (fnmatch on the path from the
    top of the repository: '*' spans directories); build trees, the demo's
    var/ and this file left out."""
    out = []
    for top, dirs, files in os.walk(REPO):
        rel_top = os.path.relpath(top, REPO)
        if rel_top == ".":
            dirs[:] = [d for d in dirs if not (d.startswith("build") or d in (".git", "var"))]
        dirs[:] = [d for d in dirs if d not in ("__pycache__", ".pytest_cache")]
        for name in files:
            rel = os.path.normpath(os.path.join(rel_top, name))
            path = REPO / rel
            if path != Path(__file__).resolve() and any(fnmatch.fnmatch(rel, p) for p in patterns):
                out.append(path)
    return sorted(out)


def local_modules():
    names = set()
    dirs = [REPO / "tests", REPO / "bench"] + [p for p in (REPO / "tests").iterdir() if p.is_dir()]
    dirs += [p for p in (REPO / "tools").iterdir() if p.is_dir()]
    for d in dirs:
        for f in d.iterdir():
            if f.suffix == ".py":
                names.add(f.stem)
            elif (f / "__init__.py").exists():
                names.add(f.name)
    return names


def c_system_commands(path):
    """Programs the C tests run with system()/popen(): the literal, or the
    format the command buffer was last snprintf'ed from."""
    text = path.read_text(errors="replace")
    out = []
    for m in re.finditer(r"\b(?:system|popen)\s*\(\s*(\"(?:[^\"\\]|\\.)*\"|\w+)", text):
        arg, line = m.group(1), text.count("\n", 0, m.start()) + 1
        if arg.startswith('"'):
            literal = arg[1:-1]
        else:
            fmts = re.findall(r"snprintf\s*\(\s*%s\s*,[^,]*,\s*\"((?:[^\"\\]|\\.)*)\""
                              % re.escape(arg), text[:m.start()])
            if not fmts:
                out.append(("?" + arg, line))
                continue
            literal = fmts[-1]
        out.extend((c, line) for c in sh_needs(sh_commands(literal.replace("\\'", "'"))))
    return out


def cmake_needs(path, targets):
    """pkg-config modules and plain libraries linked (target_link_libraries
    words that are none of the project's targets)."""
    text = re.sub(r"#.*", "", path.read_text())
    out = []
    for m in re.finditer(r"pkg_check_modules\s*\(([^)]*)\)", text):
        words = m.group(1).split()[1:]
        for w in words:
            if w not in ("REQUIRED", "QUIET", "IMPORTED_TARGET", "GLOBAL", "NO_CMAKE_PATH",
                         "NO_CMAKE_ENVIRONMENT_PATH"):
                out.append(("pc:" + re.split(r"[<>=]", w)[0], text.count("\n", 0, m.start()) + 1))
    for m in re.finditer(r"target_link_libraries\s*\(([^)]*)\)", text):
        for w in m.group(1).split()[1:]:
            if (w in ("PUBLIC", "PRIVATE", "INTERFACE") or "::" in w or "$" in w
                    or w in targets or w.startswith("-")):
                continue
            out.append(("lib:" + w, text.count("\n", 0, m.start()) + 1))
    return out


def needs_of(files):
    """[(need, 'file:line')] of the given files."""
    mods = local_modules()
    trees = {f: ast.parse(f.read_text(), str(f)) for f in files if f.suffix == ".py"}
    wrapped = python_wrappers(trees.values())
    targets = set()
    for cm in repo_files("CMakeLists.txt", "*/CMakeLists.txt"):
        targets.update(re.findall(r"add_(?:library|executable)\s*\(\s*([\w.-]+)", cm.read_text()))
    out = []
    for f in files:
        rel = _rel(f)
        if f.suffix == ".py":
            out += [(n, "%s:%d" % (rel, line))
                    for n, line in python_needs(f, trees[f], wrapped, mods)]
        elif f.suffix in (".c", ".h"):
            out += [(n, "%s:%d" % (rel, line)) for n, line in c_system_commands(f)]
        elif f.name == "CMakeLists.txt":
            out += [(n, "%s:%d" % (rel, line)) for n, line in cmake_needs(f, targets)]
        elif f.name == "Makefile":
            for line in makefile_recipes(f.read_text()):
                out += [(n, rel) for n in sh_needs(sh_commands(line))]
        else:   # a shell script
            text = f.read_text()
            for n in sh_needs(sh_commands(text)):
                out.append((n, rel))
    return out


# This file is not scanned: what it runs and looks up is what the list names.
MAKE_TEST_FILES = ("Makefile", ".ci/run", "CMakeLists.txt", "*/CMakeLists.txt",
                   "scripts/*.sh", "tests/*.py", "tests/*.sh", "tests/*.c", "tests/*.h",
                   "tools/*.py", "tools/*.sh", "fuzz/*.c")
BENCH_FILES = ("bench/*.sh", "bench/*.py", "bench/*.c")


def uncovered(needs, provided):
    missing = {}
    for need, where in needs:
        if need.startswith("?"):
            missing.setdefault("cannot tell what runs: %s" % need[1:], []).append(where)
        elif need not in provided and need not in SH_BUILTINS:
            missing.setdefault(need, []).append(where)
    return missing


def _report(missing, what):
    return "%s not provided by any line of scripts/packages.txt:\n%s" % (what, "\n".join(
        "  %s  (used in %s)" % (need, ", ".join(sorted(set(w))[:4]))
        for need, w in sorted(missing.items())))


def test_list_covers_what_make_test_uses():
    """Every command, import, pkg-config module and library that the build,
    the tests and the scripts they run use is on the list."""
    packages = read_list()
    needs = needs_of(repo_files(*MAKE_TEST_FILES))
    assert any(n == "swaks" for n, _ in needs), "the scan no longer sees the tests' swaks calls"
    assert any(n == "py:pytest" for n, _ in needs), "the scan no longer sees pytest"
    missing = uncovered(needs, provider_map(packages, bench=False))
    assert not missing, _report(missing, "used by `make test` but")


def test_list_covers_what_make_bench_uses():
    packages = read_list()
    missing = uncovered(needs_of(repo_files(*BENCH_FILES)), provider_map(packages, bench=True))
    assert not missing, _report(missing, "used by `make bench` but")


# --------------------------------------------------------------------------
# swaks's TLS, for real

def _package_of(item):
    p = provider_map(read_list(), bench=False).get(item)
    return p.name if p else "(none on the list provides %s)" % item


class _SmtpStub:
    """A minimal SMTP server on 127.0.0.1 that offers STARTTLS, or speaks
    TLS from the first byte; one connection, then it stops."""

    def __init__(self, ctx, tls_on_connect):
        self.ctx, self.tls_on_connect = ctx, tls_on_connect
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(30)
        self.port = self.sock.getsockname()[1]
        self.log = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.settimeout(30)
        buf = b""
        try:
            if self.tls_on_connect:
                conn = self.ctx.wrap_socket(conn, server_side=True)
            send = lambda s: conn.sendall(s.encode() + b"\r\n")  # noqa: E731
            send("220 stub.test ESMTP")
            while True:
                while b"\r\n" not in buf:
                    data = conn.recv(4096)
                    if not data:
                        return
                    buf += data
                line, buf = buf.split(b"\r\n", 1)
                verb = line.split(b" ", 1)[0].upper()
                self.log.append(verb.decode(errors="replace"))
                if verb in (b"EHLO", b"HELO"):
                    tls = isinstance(conn, ssl.SSLSocket)
                    send("250-stub.test")
                    send("250 HELP" if tls else "250 STARTTLS")
                elif verb == b"STARTTLS":
                    send("220 ready")
                    conn = self.ctx.wrap_socket(conn, server_side=True)
                elif verb == b"QUIT":
                    send("221 bye")
                    return
                else:
                    send("250 ok")
        except (OSError, ssl.SSLError) as e:
            self.log.append("error: %s" % e)
        finally:
            conn.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes an accept() still waiting
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def server_tls_context(tmp_path_factory):
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.fail("openssl is not installed (package %s; sh scripts/install-deps.sh installs it)"
                    % _package_of("openssl"))
    d = tmp_path_factory.mktemp("stubcert")
    r = subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", str(d / "key.pem"),
                        "-out", str(d / "cert.pem")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return ctx


def _swaks():
    path = shutil.which("swaks")
    if not path:
        pytest.fail("swaks is not installed (package %s; sh scripts/install-deps.sh installs it)"
                    % _package_of("swaks"))
    return path


def test_swaks_supports_tls():
    """swaks --support says TLS is available (it needs Perl's Net::SSLeay)."""
    r = subprocess.run([_swaks(), "--support"], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    m = re.search(r"^\W*TLS (supported|not available.*)$", out, re.M)
    assert m, "swaks --support does not mention TLS:\n" + out
    assert m.group(1) == "supported", (
        "swaks cannot do TLS (%s): install package %s (sh scripts/install-deps.sh installs it)"
        % (m.group(1), _package_of("perl:Net::SSLeay")))


@pytest.mark.parametrize("mode", ["--tls", "--tls-on-connect"])
def test_swaks_tls_handshake(server_tls_context, mode):
    """swaks completes a real TLS handshake: STARTTLS (--tls) and implicit
    TLS (--tls-on-connect), against a stub server on loopback."""
    stub = _SmtpStub(server_tls_context, tls_on_connect=(mode == "--tls-on-connect"))
    try:
        r = subprocess.run([_swaks(), "--server", "127.0.0.1:%d" % stub.port, mode,
                            "--quit-after", "helo", "--helo", "client.test",
                            "--from", "a@client.test", "--to", "b@stub.test", "--timeout", "20"],
                           capture_output=True, text=True, timeout=90)
    finally:
        stub.close()
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "TLS started" in out, (
        "swaks %s failed (exit %d); without Net::SSLeay it cannot do TLS (package %s):\n%s\n"
        "server saw: %s" % (mode, r.returncode, _package_of("perl:Net::SSLeay"), out[-3000:],
                            stub.log))


# --------------------------------------------------------------------------
# the list is installed

def _present(item):
    """Whether one PROVIDES word is there (None) or why not."""
    kind, name = item.split(":", 1) if ":" in item else ("", item)
    if not kind:
        return None if shutil.which(name) else "command %s not on PATH" % name
    if kind == "py":
        return None if importlib.util.find_spec(name) else "Python module %s not importable" % name
    if kind == "perl":
        if not shutil.which("perl"):
            return "perl not on PATH"
        r = subprocess.run(["perl", "-M" + name, "-e", "1"], capture_output=True, text=True)
        return None if r.returncode == 0 else "Perl module %s not loadable" % name
    if kind == "pc":
        if not shutil.which("pkg-config"):
            return "pkg-config not on PATH"
        r = subprocess.run(["pkg-config", "--exists", name])
        return None if r.returncode == 0 else "pkg-config module %s not found" % name
    return None if ctypes.util.find_library(name) else "library lib%s not found" % name


def _dist_key(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_pip_names_provide_their_modules():
    """A line's pip:NAME is the distribution that holds its py:MODULE (the
    same name whether the module came from Debian or from PyPI), so the
    install-deps.sh step for a python3 that is not Debian's brings the
    module the tests import."""
    import importlib.metadata
    dists = importlib.metadata.packages_distributions()
    lines = [p for p in read_list() if p.pip]
    assert any(p.pip == "dkimpy" for p in lines), "the list no longer has dkimpy's pip:NAME"
    problems = []
    for p in lines:
        module = next(x[3:] for x in p.provides if x.startswith("py:"))
        if importlib.util.find_spec(module) is None:
            problems.append("py:%s (pip:%s) is not importable" % (module, p.pip))
        elif _dist_key(p.pip) not in {_dist_key(d) for d in dists.get(module, [])}:
            problems.append("py:%s comes from %s, not from pip:%s" % (
                module, ", ".join(dists.get(module, [])) or "no distribution", p.pip))
    assert not problems, "\n".join(problems) + (
        "\n(sh scripts/install-deps.sh installs the pip:NAME of a line for a python3 that is "
        "not Debian's)")


def test_listed_packages_installed():
    """Each package `make deps` installs is installed and provides what the
    list says (a package of [any-source] may come from elsewhere: what it
    provides must be there)."""
    packages = [p for p in read_list() if "[bench]" not in p.flags
                and not ("[non-root]" in p.flags and os.geteuid() == 0)]
    dpkg = shutil.which("dpkg-query")
    assert dpkg, "dpkg-query not found: tern's build and tests expect Debian"
    r = subprocess.run([dpkg, "-W", "-f=${Package} ${Status}\n"] + [p.name for p in packages],
                       capture_output=True, text=True)
    installed = {line.split()[0].split(":")[0] for line in r.stdout.splitlines()
                 if line.endswith("install ok installed")}
    problems = []
    for p in packages:
        absent = [why for why in map(_present, p.provides) if why]
        if p.name not in installed and ("[any-source]" not in p.flags or absent or not p.provides):
            problems.append("package %s is not installed%s" % (
                p.name, " and " + "; ".join(absent) if absent else ""))
        elif absent:
            problems.append("package %s is installed but %s" % (p.name, "; ".join(absent)))
    assert not problems, "\n".join(problems) + (
        "\n(sh scripts/install-deps.sh installs the packages of scripts/packages.txt)")
