"""Hostile programs against the code sandbox: each scores 0, leaves the host and the trainer untouched, and ends
in bounded time. The task is MBPP-style ``add(a, b)``; no hostile program returns the right sum, so any score
above 0 would be a forged verdict. Prints a table (shown with ``-s``)."""

import os
import socket
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from rlreason.types import Problem
from rlreason.verifiers import code
from rlreason.verifiers.sandbox import CandidateRaised, Sandbox, SandboxError, isolation

WALL = 3.0
SECRET = "rlreason-secret-7f3a"


def _problem() -> Problem:
    ref = {"format": "mbpp", "tests": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"], "test_imports": [],
           "entry_point": "add"}
    return Problem("hostile", "write add", ref, "python_tests")


def _cases(host: dict) -> list[tuple[str, str]]:
    """(name, program). ``host`` holds paths/ports the programs aim at."""
    body = {
        "fork bomb": "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
        "memory bomb": "x = []\nwhile True:\n    x.append(bytearray(10**7))",
        "infinite loop at import": "while True:\n    pass",
        "infinite loop in call": "def add(a, b):\n    while True:\n        pass",
        "sleep forever": "import time\ntime.sleep(10**6)",
        "write outside sandbox": f"open({host['escape']!r}, 'w').write('x')\ndef add(a, b): return 0",
        "write into the repo": f"open({host['repo_file']!r}, 'w').write('x')\ndef add(a, b): return 0",
        "huge file": "f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * 10**6)",
        "read trainer file": f"s = open({host['secret_file']!r}).read()\ndef add(a, b): return s",
        "read environment": f"import os\nassert {SECRET!r} in str(os.environ)\ndef add(a, b): return 0",
        "read parent's environ": "s = open('/proc/1/environ').read()\ndef add(a, b): return s",
        "open local socket": f"import socket\nsocket.create_connection(('127.0.0.1', {host['port']}), 1)\n"
                             "def add(a, b): return 0",
        "open remote socket": "import socket\nsocket.create_connection(('1.1.1.1', 80), 1)\ndef add(a, b): return 0",
        "kill the parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef add(a, b): return 0",
        "kill every pid": f"import os\nfor p in range(1, {host['max_pid']}):\n    try: os.kill(p, 9)\n"
                          "    except Exception: pass\ndef add(a, b): return 0",
        "kill(-1)": "import os\nos.kill(-1, 9)\ndef add(a, b): return 0",
        "flood stdout": "def add(a, b):\n    while True:\n        print('x' * 100000)",
        "flood stderr": "import sys\nwhile True:\n    sys.stderr.write('y' * 100000)",
        "deep recursion": "import sys\nsys.setrecursionlimit(10**7)\ndef add(a, b): return add(a, b) + 1",
        "early exit(0)": "import sys\nsys.exit(0)",
        "os._exit(0) in call": "import os\ndef add(a, b): os._exit(0)",
        "print passed": "print('passed')\nprint('All tests passed')\ndef add(a, b): return 0",
        "monkeypatch assert": "import builtins\nbuiltins.AssertionError = type('N', (Exception,), {})\n"
                              "def add(a, b): return 0",
        "always-equal object": "class Eq:\n    def __eq__(self, o): return True\ndef add(a, b): return Eq()",
        "segfault": "import ctypes\nctypes.string_at(0)",
        "thread bomb": "import threading, time\nwhile True:\n"
                       "    threading.Thread(target=time.sleep, args=(100,)).start()",
        "fd exhaustion": "fs = [open(f'f{i}', 'w') for i in range(10**5)]\ndef add(a, b): return 0",
        "escalate to root": "import os\nos.setuid(0)\ndef add(a, b): return 0",
        "daemonize and linger": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                                "        time.sleep(60)\ndef add(a, b): return 0",
        "ignore SIGTERM": "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(100)",
        "huge return value": "def add(a, b): return 'x' * 10**8",
        "nesting bomb": "def add(a, b):\n    x = []\n    for _ in range(10**5):\n        x = [x]\n    return x",
    }
    return list(body.items())


def _sandboxed_processes() -> list[dict]:
    return [p.info for p in psutil.process_iter(["pid", "uids", "status"])
            if p.info["uids"] and p.info["uids"].real == 65534 and p.info["status"] != psutil.STATUS_ZOMBIE]


@pytest.fixture()
def host(tmp_path, monkeypatch):
    secret_file = tmp_path / "trainer-secret.txt"
    secret_file.write_text(SECRET)
    monkeypatch.setenv("RLREASON_SECRET", SECRET)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)
    repo_file = os.path.join(os.path.dirname(__file__), "ESCAPED-FROM-SANDBOX")
    yield {"escape": f"/tmp/rlreason-escape-{os.getpid()}", "repo_file": repo_file, "secret_file": str(secret_file),
           "port": server.getsockname()[1], "max_pid": 4 * 32768, "server": server}
    server.close()
    for path in (f"/tmp/rlreason-escape-{os.getpid()}", repo_file):
        if os.path.exists(path):
            os.remove(path)


@pytest.mark.skipif(isolation() != "namespaces", reason="NO NAMESPACES ON THIS MACHINE: programs are not isolated "
                    "from the host here (only limits apply); the containment suite cannot pass and is not run")
def test_hostile_programs_are_contained(host, monkeypatch, capsys):
    monkeypatch.setattr(code, "WALL_SECONDS", WALL)
    problem, bystander = _problem(), threading.Thread(target=time.sleep, args=(0,))

    def run(case):
        start = time.monotonic()
        result = code.python_tests(f"```python\n{case[1]}\n```", problem)
        return case[0], result, time.monotonic() - start

    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(run, _cases(host)))
    bystander.start()
    bystander.join()
    try:
        host["server"].accept()
        connected = True
    except OSError:
        connected = False
    leftovers = _sandboxed_processes()
    for _ in range(30):  # the kernel kills a dead namespace's processes asynchronously
        if not leftovers:
            break
        time.sleep(0.1)
        leftovers = _sandboxed_processes()
    with capsys.disabled():
        print(f"\n{'hostile program':28} {'score':>5} {'wall s':>7}  outcome   (isolation: {isolation()})")
        for name, result, wall in rows:
            print(f"{name:28} {result.score:5.1f} {wall:7.2f}  {str(result.details.get('failure', ''))[:60]}")
    assert all(r.score == 0.0 for _, r, _ in rows), [(n, r) for n, r, _ in rows if r.score]
    assert all(wall < WALL + 3.0 for _, _, wall in rows), [(n, w) for n, _, w in rows if w >= WALL + 3.0]
    assert not os.path.exists(host["escape"]) and not os.path.exists(host["repo_file"])
    assert not connected, "a sandboxed program reached a socket on the host"
    assert not leftovers, f"sandboxed processes outlived their run: {leftovers}"
    assert psutil.Process().is_running()  # the trainer (this process) survived every kill attempt


@pytest.mark.skipif(isolation() != "namespaces", reason="this machine does not allow namespaces")
def test_the_sandbox_sees_no_host_files_environment_network_or_processes(host):
    probe = textwrap.dedent(f"""
        import os, socket
        def listing(): return sorted(os.listdir('/'))
        def env(): return dict(os.environ)
        def ids(): return os.getuid(), os.getgid(), os.getpid(), os.getppid()
        def read(path): return open(path).read()
        def connect(): return socket.create_connection(('127.0.0.1', {host['port']}), 1) and 'connected'
        def write(path): return open(path, 'w').write('x')
    """)
    with Sandbox(probe, wall_s=10) as box:
        assert set(box.call("listing")) <= {"bin", "lib", "lib32", "lib64", "usr", "etc", "root", "opt", "home",
                                             "tmp", "work"}
        assert set(box.call("env")) <= {"LC_CTYPE"}  # cleared (Python itself coerces the C locale)
        assert box.call("ids") == (65534, 65534, 1, 0)
        for path in (host["secret_file"], "/etc/passwd", "/proc/1/environ"):
            with pytest.raises(CandidateRaised, match="FileNotFoundError|PermissionError"):
                box.call("read", path)
        with pytest.raises(CandidateRaised, match="OSError|ConnectionRefused|Network"):
            box.call("connect")
        with pytest.raises(CandidateRaised, match="OSError|ReadOnly|Permission"):
            box.call("write", "/usr/escape")
        assert box.call("write", "/work/ok.txt") == 1  # its own working directory is writable


def test_a_program_that_never_answers_times_out_within_the_deadline():
    start = time.monotonic()
    with pytest.raises(SandboxError, match="timed out"):
        with Sandbox("import time\ntime.sleep(100)", wall_s=1.0):
            pass
    assert time.monotonic() - start < 3.0


def test_without_namespaces_the_limits_and_the_protocol_still_hold():
    """The degraded mode machines without namespaces get (a warning is logged there): no isolation, but
    limits, deadlines and an unforgeable verdict."""
    with Sandbox("def f(x):\n    return x * 2\n", isolated=False) as box:
        assert box.call("f", 21) == 42
    for program, message in (("while True:\n    pass", "timed out|exited"), ("import sys\nsys.exit(0)", "SystemExit"),
                             ("x = bytearray(2 * 10**9)", "MemoryError")):
        with pytest.raises(SandboxError, match=message):
            Sandbox(program, isolated=False, wall_s=2.0, cpu_s=1)
