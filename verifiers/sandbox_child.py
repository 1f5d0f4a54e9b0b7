"""The sandboxed side of ``rlreason.verifiers.sandbox`` (standard library only; also importable for its codec).

Run as ``python -I -S sandbox_child.py ROOT REQ_FD RESP_FD ISOLATE``. It reads the candidate's source from stdin,
then, when ``ISOLATE`` is 1 (it is pid 1 of fresh pid, mount, network and IPC namespaces, as root): mounts a
small tmpfs on ROOT, binds the system libraries and the interpreter read-only into it, chroots there, drops to
uid/gid 65534 with no capabilities and no new privileges. Then, always: resource limits, ``exec`` of the source
with stdout/stderr discarded, and a call server: each request names a top-level function and carries encoded
arguments; each response carries an encoded value or the exception's type. The verdict is never decided here:
the trusted side runs the tests on the returned values.
"""

import ctypes
import io
import json
import os
import resource
import struct
import sys

MAX_MESSAGE = 1 << 20
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
NOBODY = 65534


# -- codec: plain data only, so nothing the candidate returns can run code on the trusted side -----------------
def encode(value, depth=0):
    if depth > 64:
        raise ValueError("value nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return {"i": str(value)}
    if isinstance(value, float):
        return {"f": repr(value)}
    if isinstance(value, complex):
        return {"c": [repr(value.real), repr(value.imag)]}
    if isinstance(value, bytes):
        return {"b": value.hex()}
    tags = ((list, "l"), (tuple, "t"), (set, "s"), (frozenset, "z"))
    for kind, tag in tags:
        if type(value) is kind:
            return {tag: [encode(v, depth + 1) for v in value]}
    if isinstance(value, dict):  # Counter, OrderedDict, defaultdict compare like dicts
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, tuple):  # namedtuples compare like tuples
        return {"t": [encode(v, depth + 1) for v in value]}
    if isinstance(value, list):
        return {"l": [encode(v, depth + 1) for v in value]}
    # anything else (a regex match, a generator...) crosses as an opaque value: its repr and truth only
    return {"o": [type(value).__name__, repr(value)[:1000], bool(value)]}


class Opaque:
    """A value of a type that cannot cross: equal to nothing, true or false as it was, shown by its repr."""

    def __init__(self, kind, text, truth):
        self.kind, self.text, self.truth = str(kind), str(text), bool(truth)

    def __bool__(self):
        return self.truth

    def __repr__(self):
        return f"<{self.kind}: {self.text}>"


def decode(data, depth=0):
    if depth > 64:
        raise ValueError("value nested too deeply")
    if data is None or isinstance(data, (bool, str)):
        return data
    if not isinstance(data, dict) or len(data) != 1:
        raise ValueError("malformed value")
    (tag, body), = data.items()
    if tag == "i":
        return int(body)
    if tag == "f":
        return float(body)
    if tag == "c":
        return complex(float(body[0]), float(body[1]))
    if tag == "b":
        return bytes.fromhex(body)
    if tag == "d":
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in body}
    if tag == "o":
        return Opaque(*body)
    kinds = {"l": list, "t": tuple, "s": set, "z": frozenset}
    if tag not in kinds:
        raise ValueError(f"unknown tag {tag!r}")
    return kinds[tag](decode(v, depth + 1) for v in body)


def send(fd, message):
    data = json.dumps(message).encode()
    if len(data) > MAX_MESSAGE:
        data = json.dumps({"error": "message too large"}).encode()
    os.write(fd, struct.pack("<I", len(data)) + data)


def read_exact(fd, n):
    chunks = b""
    while len(chunks) < n:
        chunk = os.read(fd, n - len(chunks))
        if not chunk:
            raise EOFError
        chunks += chunk
    return chunks


# -- isolation ---------------------------------------------------------------------------------------------
def _mount(libc, source, target, fstype, flags, options=None):
    if libc.mount(source, target.encode(), fstype, flags, options) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def _bind_readonly(libc, root, path):
    inside = root + path
    if os.path.islink(path):
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        os.symlink(os.readlink(path), inside)
        return
    os.makedirs(inside, exist_ok=True)
    _mount(libc, path.encode(), inside, None, _MS_BIND | _MS_REC)
    _mount(libc, None, inside, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


def isolate(root):
    """Chroot into a fresh tmpfs holding read-only system libraries and this interpreter; become nobody."""
    libc = ctypes.CDLL(None, use_errno=True)
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount(libc, b"tmpfs", root, b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=32m,mode=0755")
    for path in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/etc/ld.so.cache", sys.base_prefix):
        if os.path.lexists(path) and not os.path.isfile(path):
            _bind_readonly(libc, root, path)
    for name in ("work", "tmp"):
        os.mkdir(os.path.join(root, name), 0o700)
        os.chown(os.path.join(root, name), NOBODY, NOBODY)
    os.chroot(root)
    os.chdir("/work")
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS


def limit(cpu_s, memory_bytes):
    for res, value in ((resource.RLIMIT_CPU, cpu_s), (resource.RLIMIT_AS, memory_bytes),
                       (resource.RLIMIT_FSIZE, 1 << 20), (resource.RLIMIT_NOFILE, 32),
                       (resource.RLIMIT_NPROC, 32), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))


class _Discard(io.TextIOBase):
    def write(self, text):
        return len(text)


def serve(source, req_fd, resp_fd):
    sys.stdout = sys.stderr = _Discard()
    namespace = {"__name__": "__main__"}
    try:
        exec(compile(source, "<completion>", "exec"), namespace)
    except BaseException as e:  # SystemExit included: an early exit is a failed program
        send(resp_fd, {"error": f"{type(e).__name__}: {str(e)[:200]}"})
        return
    names = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("__"))
    modules = sorted(k for k, v in namespace.items() if type(v) is type(sys) and k == v.__name__)
    send(resp_fd, {"ready": names, "modules": modules})
    while True:
        try:
            (size,) = struct.unpack("<I", read_exact(req_fd, 4))
            request = json.loads(read_exact(req_fd, size))
        except EOFError:
            return
        try:
            fn = namespace[request["name"]]
            value = fn(*decode(request["args"]), **decode(request["kwargs"]))
            send(resp_fd, {"value": encode(value)})
        except BaseException as e:
            send(resp_fd, {"raised": type(e).__name__, "message": str(e)[:200]})


def main():
    root, req_fd, resp_fd, isolated, cpu_s, memory = sys.argv[1:7]
    source = sys.stdin.read()
    if isolated == "1":
        isolate(root)
    limit(int(cpu_s), int(memory))
    serve(source, int(req_fd), int(resp_fd))
    os._exit(0)


if __name__ == "__main__":
    main()
