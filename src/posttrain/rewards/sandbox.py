"""Run untrusted Python programs in a separate, limited process (the sandbox behind `code_tests`).

Not a VM or a container: it raises the cost of the common ways a hostile or broken program harms
the trainer (see docs/sandbox.md for what it does not stop). Each execution gets:

- limits: wall time (the host kills it), CPU seconds, address space, processes (per user), file
  size, open files, captured output (more kills it); a lower priority (nice);
- a scrubbed environment and an empty working directory, removed afterwards;
- namespaces where the kernel allows them (root, or unprivileged user namespaces): a new network
  namespace (no interfaces up: nothing, not even localhost, is reachable), a PID namespace (the
  host's processes are invisible; when the program ends every process it started dies) and a
  mount namespace (the filesystem read-only, home directories hidden, private tmpfs for /tmp,
  /var/tmp, /dev/shm and the working directory, a /dev without GPUs or disks, a fresh /proc).
  Without a network namespace an audit hook refuses internet sockets (a guard against accidents,
  not a boundary);
- as root: the program runs as its own unprivileged uid (one per concurrent execution, from
  SANDBOX_UIDS, claimed with a lock file), so process limits and file permissions apply, and every
  process of that uid is killed when the execution ends.

Run as a script (`python -I sandbox.py JOB`) this file is the child side (`_child_main`); imported,
it is the host side (`Sandbox`). It imports only the standard library, so the child starts fast.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
import tempfile
from dataclasses import asdict, dataclass, field

SANDBOX_UIDS = range(64000, 65000)  # unused by Debian-style systems; existing accounts are skipped
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
DEVICES = ("null", "zero", "full", "random", "urandom")  # all of /dev a program sees (no GPUs, no disks)
SETUP_FAILED = "setup-failed"


@dataclass(frozen=True)
class Limits:
    timeout: float = 5.0  # wall seconds per execution; the host kills the whole tree after it
    cpu_seconds: float = 5.0  # RLIMIT_CPU, per process
    memory_mb: int = 1024  # RLIMIT_AS (virtual memory), per process
    max_processes: int = 32  # RLIMIT_NPROC: processes of the sandbox user
    max_file_mb: int = 16  # RLIMIT_FSIZE; also the size of each private tmpfs
    max_output_kb: int = 1024  # stdout + stderr kept; a program that writes more is killed
    max_open_files: int = 256  # RLIMIT_NOFILE
    nice: int = 10  # added niceness, so executions don't starve the trainer


@dataclass
class Execution:
    returncode: int | None  # the program's exit status (128+N: killed by signal N)
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    output_exceeded: bool = False
    checks: list[bool] = field(default_factory=list)  # per check snippet: it ran without raising
    isolation: dict = field(default_factory=dict)  # what was active (see `Sandbox.isolation`)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_exceeded


# ---------------------------------------------------------------- child side (runs before and as the program)

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 0x1000, 0x4000, 0x40000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, AT_RECURSIVE, AT_FDCWD = 1, 2, 0x8000, -100
SYS_MOUNT_SETATTR = 442  # the same number on x86_64 and aarch64
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38


_libc = ctypes.CDLL(None, use_errno=True)


def _ok(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source, target: str, fstype, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _ok(_libc.mount(enc(source), target.encode(), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _child_main(job_path: str) -> None:
    with open(job_path) as f:
        job = json.load(f)
    os.unlink(job_path)
    status = os.fdopen(job["status_fd"], "w", buffering=1)
    limits, as_root = job["limits"], os.getuid() == 0
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the host dies -> so do we
        mb = 1024 * 1024
        cpu = max(1, int(limits["cpu_seconds"] + 0.999))
        for which, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_CORE, (0, 0)),
                             (resource.RLIMIT_AS, (limits["memory_mb"] * mb,) * 2),
                             (resource.RLIMIT_FSIZE, (limits["max_file_mb"] * mb,) * 2),
                             (resource.RLIMIT_NOFILE, (limits["max_open_files"],) * 2)):
            resource.setrlimit(which, value)
        os.nice(limits["nice"])
        namespaces = _unshare(as_root) if job["namespaces"] else ()
    except (OSError, ValueError) as exc:
        _fail(status, exc)
    init = os.fork()
    if init == 0:
        _init(job, status, namespaces, as_root)
    os._exit(_wait_for(init))


def _unshare(as_root: bool) -> tuple[str, ...]:
    """The strongest set of namespaces this kernel lets us enter: mount+pid+net, else net, else none."""
    user = 0 if as_root else CLONE_NEWUSER
    uid, gid = os.getuid(), os.getgid()
    for flags, names in ((CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET, ("mount", "pid", "net")), (CLONE_NEWNET, ("net",))):
        if _libc.unshare(flags | user) == 0:
            if not as_root:  # keep our own ids inside the user namespace (unmapped ids cannot write files)
                for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
            return names
    return ()


def _init(job: dict, status, namespaces: tuple, as_root: bool) -> None:
    """The program's parent: pid 1 of the PID namespace when there is one, so that when the program
    exits, the kernel kills everything it left behind."""
    filesystem = {}
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if "mount" in namespaces:
            filesystem = _private_filesystem(job, as_root)
        os.chdir(job["workdir"])
    except OSError as exc:
        _fail(status, exc)
    program = os.fork()
    if program == 0:
        _run_program(job, status, namespaces, filesystem, as_root)
    os._exit(_wait_for(program))


def _wait_for(pid: int) -> int:
    while True:  # also reaps orphans, which pid 1 inherits
        try:
            done, wait_status = os.wait()
        except ChildProcessError:
            return 1
        if done == pid:
            code = os.waitstatus_to_exitcode(wait_status)
            return code if code >= 0 else 128 - code


def _private_filesystem(job: dict, as_root: bool) -> dict:
    """Read-only view of the host's filesystem with private homes and private writable tmpfs."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks back to the host
    keep = _interpreter_dirs()
    hide = _private_dirs(keep, as_root)
    keep_fds = {k: os.open(k, os.O_PATH | os.O_DIRECTORY) for k in keep if any(_inside(k, h) for h in hide)}
    for path in hide:
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for path, fd in keep_fds.items():  # the interpreter lives under a hidden directory: bind it back
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    private_dev = _private_dev()
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)  # struct mount_attr
    read_only = _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)) == 0
    size = f"size={job['limits']['max_file_mb']}m,nr_inodes=4096"
    for path in SCRATCH_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,{size}")
    os.makedirs(job["workdir"], exist_ok=True)  # a fresh /tmp no longer holds it
    owner = job["uid"] if job["uid"] is not None else os.getuid()
    _mount("tmpfs", job["workdir"], "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0700,uid={owner},gid={owner},{size}")
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # shows only the namespace's processes
        private_proc = True
    except OSError:  # refused in some containers (a masked /proc); the host's /proc stays
        private_proc = False
    return {"read_only_root": read_only, "hidden": hide, "private_dev": private_dev, "private_proc": private_proc}


def _private_dev() -> bool:
    """A /dev with only DEVICES (bound from the host's), /dev/shm and the /dev/fd links."""
    fds = {name: os.open(f"/dev/{name}", os.O_PATH) for name in DEVICES if os.path.exists(f"/dev/{name}")}
    try:
        _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=0755,size=64k")
    except OSError:
        return False
    for name, fd in fds.items():
        open(f"/dev/{name}", "w").close()
        _mount(f"/proc/self/fd/{fd}", f"/dev/{name}", None, MS_BIND)
        os.close(fd)
    os.mkdir("/dev/shm")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{name}")
    return True


def _interpreter_dirs() -> list[str]:
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), *sys.path}
    dirs = sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)})
    return [d for d in dirs if not any(o != d and _inside(d, o) for o in dirs)]


def _private_dirs(keep: list[str], as_root: bool) -> list[str]:
    """Home directories, and (as root) each directory above the interpreter that others cannot enter."""
    import pwd
    found = {os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir), "/root"}
    if as_root:
        for k in keep:
            parts = k.strip("/").split("/")
            for i in range(1, len(parts)):
                ancestor = "/" + "/".join(parts[:i])
                if not os.stat(ancestor).st_mode & 0o001:
                    found.add(ancestor)
                    break
    found = {d for d in found if d != "/" and os.path.isdir(d) and d not in keep}
    return sorted(d for d in found if not any(o != d and _inside(d, o) for o in found))


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _run_program(job: dict, status, namespaces: tuple, filesystem: dict, as_root: bool) -> None:
    uid, nonce = job["uid"], job["nonce"]
    try:
        if as_root:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        nproc = job["limits"]["max_processes"]
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))  # after unshare: counts this namespace only
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the uid change
        _ok(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")  # no setuid binaries
        # capset(header {version 3, this process}, data {effective, permitted, inheritable} x 2 = all 0)
        _ok(_libc.capset((ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)()), "capset")
        stdlib = os.path.dirname(os.__file__)
        if not os.access(stdlib, os.R_OK | os.X_OK):
            raise OSError(13, f"the sandbox user (uid {os.getuid()}) cannot read the Python standard library "
                              f"at {stdlib}; use a Python every user can read (code_tests:python=PATH)")
        if "net" not in namespaces:
            sys.addaudithook(_refuse_internet_sockets)
    except OSError as exc:
        _fail(status, exc)
    isolation = {"user": f"uid {uid}" if as_root else "same user (not root)",
                 "network": "namespace" if "net" in namespaces else "audit hook",
                 "pid_namespace": "pid" in namespaces, "mount_namespace": "mount" in namespaces, **filesystem}
    status.write(f"{nonce} ready {json.dumps(isolation)}\n")
    source, checks = job["source"], job["checks"]
    del job
    os._exit(_execute(source, checks, status, nonce))


def _refuse_internet_sockets(event: str, args: tuple) -> None:
    # No imports in here: the hook sees every import's own events.
    if event == "socket.__new__" and len(args) > 1 and args[1] in (2, 10):  # AF_INET, AF_INET6 on Linux
        raise PermissionError("network access is disabled in the sandbox")


def _execute(source: str, checks: list[str], status, nonce: str) -> int:
    """Run the program as __main__, then each check snippet in its namespace; report each check."""
    import traceback
    import types
    module = types.ModuleType("__main__")
    sys.modules["__main__"], sys.argv = module, ["main.py"]
    code = 0
    try:
        exec(compile(source, "main.py", "exec"), module.__dict__)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # noqa: BLE001 - the program's own failure, shown on its stderr
        traceback.print_exception(exc.with_traceback(exc.__traceback__.tb_next))
        code = 1
    for i, check in enumerate(checks):
        try:
            exec(compile(check, f"<test {i}>", "exec"), module.__dict__)
            passed = True
        except BaseException as exc:  # noqa: BLE001
            traceback.print_exception(exc.with_traceback(exc.__traceback__.tb_next))
            passed = False
        status.write(f"{nonce} check {i} {int(passed)}\n")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - the program may have closed it
            pass
    return code & 0xFF


def _fail(status, exc: OSError) -> None:
    status.write(f"{SETUP_FAILED} {exc}\n")
    os._exit(125)

# ---------------------------------------------------------------- host side

_CHILD = os.path.realpath(__file__)
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
_ISOLATION: dict = {}


def default_workers() -> int:
    """Parallel executions: half the cores, so the trainer keeps the other half."""
    return max(1, (os.cpu_count() or 2) // 2)


class Sandbox:
    """Runs programs under `limits`, up to `workers` at a time (`run_many`)."""

    def __init__(self, limits: Limits | None = None, workers: int | None = None, python: str | None = None,
                 namespaces: bool = True):
        self.limits = limits or Limits()
        self.workers = workers or default_workers()
        self.python = python or sys.executable  # the interpreter that runs the programs
        self.namespaces = namespaces  # False: the fallback of machines without them (used by the tests)

    def isolation(self) -> dict:
        """What this machine's sandbox achieves (user, network, namespaces, filesystem), from a trial run."""
        key = (self.python, self.namespaces)
        if key not in _ISOLATION:
            _ISOLATION[key] = self.run("").isolation
        return dict(_ISOLATION[key])

    def run_many(self, jobs: list[tuple[str, str, list[str] | None]]) -> list[Execution]:
        """`run(source, stdin, checks)` for each job, `workers` at a time, results in order."""
        if len(jobs) <= 1 or self.workers == 1:
            return [self.run(*job) for job in jobs]
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs))) as pool:
            return list(pool.map(lambda job: self.run(*job), jobs))

    def run(self, source: str, stdin: str = "", checks: list[str] | None = None) -> Execution:
        """Run `source` with `stdin`, then each snippet of `checks` in the program's namespace
        (`Execution.checks[i]`: snippet i ran without raising)."""
        import secrets
        import subprocess
        import time
        uid, lock_fd = _claim_uid() if os.getuid() == 0 else (None, None)
        workdir = tempfile.mkdtemp(prefix="posttrain-sandbox-")
        read_end, write_end = os.pipe()
        nonce, checks, proc = secrets.token_hex(16), list(checks or []), None
        started = time.monotonic()
        try:
            job_path = os.path.join(workdir, "job.json")
            with open(job_path, "w") as f:
                json.dump({"source": source, "checks": checks, "limits": asdict(self.limits), "uid": uid,
                           "nonce": nonce, "status_fd": write_end, "workdir": workdir,
                           "namespaces": self.namespaces}, f)
            if uid is not None:
                os.chown(workdir, uid, uid)
            proc = subprocess.Popen([self.python, "-I", _CHILD, job_path], cwd=workdir, env={**_ENV, "HOME": workdir},
                                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, pass_fds=(write_end,), start_new_session=True)
            os.close(write_end)
            write_end = None
            output, timed_out, exceeded = _communicate(proc, stdin.encode(), read_end, self.limits,
                                                       lambda: _kill_all(proc.pid, uid))
            proc.wait()
        finally:
            if proc is not None:
                if proc.returncode is None:  # interrupted: stop it all
                    _kill_all(proc.pid, uid)
                    proc.wait()
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream:
                        stream.close()
            for fd in (read_end, write_end):
                if fd is not None:
                    os.close(fd)
            _remove(workdir)
            if lock_fd is not None:
                os.close(lock_fd)  # releases the uid
        text = {k: v.decode("utf-8", "replace") for k, v in output.items()}
        lines = text["status"].splitlines()
        first = lines[0] if lines else ""
        if not first.startswith(f"{nonce} ready ") and not timed_out:
            from posttrain.errors import UserError
            reason = first[len(SETUP_FAILED) + 1:] if first.startswith(SETUP_FAILED) else \
                f"the sandbox process exited with {proc.returncode} before starting the program: {text['stderr'][-300:]!r}"
            raise UserError(f"code sandbox: {reason}")
        passed = [False] * len(checks)
        for line in lines[1:]:
            parts = line.split(" ")
            if len(parts) == 4 and parts[0] == nonce and parts[1] == "check" and parts[2].isdigit() \
                    and int(parts[2]) < len(checks):
                passed[int(parts[2])] = parts[3] == "1"
        isolation = json.loads(first.split(" ", 2)[2]) if first.startswith(f"{nonce} ready ") else {}
        return Execution(returncode=None if timed_out or exceeded else proc.returncode, stdout=text["stdout"],
                         stderr=text["stderr"], timed_out=timed_out, output_exceeded=exceeded, checks=passed,
                         isolation=isolation, wall_seconds=time.monotonic() - started)


def _communicate(proc, data: bytes, status_fd: int, limits: Limits, kill) -> tuple[dict, bool, bool]:
    """Feed stdin; collect stdout, stderr and the status pipe (up to the cap) until the program exits,
    the wall deadline passes or the output passes its cap; then `kill` what is left and read on
    (a second at most) until the pipes close, which is when the last process holding them is gone."""
    import selectors
    import time
    cap, deadline = limits.max_output_kb * 1024, time.monotonic() + limits.timeout
    streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr", status_fd: "status"}
    output = {name: bytearray() for name in streams.values()}
    selector = selectors.DefaultSelector()
    for fd in streams:
        selector.register(fd, selectors.EVENT_READ)
    stdin_fd = proc.stdin.fileno() if proc.stdin else None
    if stdin_fd is not None:
        os.set_blocking(stdin_fd, False)
        selector.register(stdin_fd, selectors.EVENT_WRITE)
    try:
        pidfd = os.pidfd_open(proc.pid)  # readable once the process exits (Linux >= 5.3)
        selector.register(pidfd, selectors.EVENT_READ)
    except (AttributeError, OSError):
        pidfd = None  # poll instead
    timed_out = exceeded = killed = False
    try:
        while streams or not killed:  # it may close its pipes and run on
            remaining = deadline - time.monotonic()
            if remaining <= 0 and killed:
                break
            events = selector.select(max(0.0, remaining) if pidfd is not None else min(max(0.0, remaining), 0.02))
            for key, _ in events:
                if key.fd == stdin_fd:
                    try:
                        data = data[os.write(stdin_fd, data[:65536]):]
                    except BlockingIOError:
                        pass
                    except BrokenPipeError:  # it stopped reading
                        data = b""
                    if not data:
                        selector.unregister(stdin_fd)
                        proc.stdin.close()
                        stdin_fd = None
                elif key.fd in streams:
                    block = os.read(key.fd, 65536)
                    if not block:
                        selector.unregister(key.fd)
                        del streams[key.fd]
                    elif not exceeded:
                        output[streams[key.fd]] += block
                        exceeded = sum(map(len, output.values())) > cap
            exited = any(key.fd == pidfd for key, _ in events) if pidfd is not None else _has_exited(proc.pid)
            timed_out = timed_out or (not killed and not exited and deadline <= time.monotonic())
            if not killed and (exited or exceeded or timed_out):
                kill()
                killed, deadline = True, time.monotonic() + 1.0
                for fd in (pidfd, stdin_fd):
                    if fd is not None:
                        selector.unregister(fd)
                if stdin_fd is not None:
                    proc.stdin.close()
                    stdin_fd = None
    finally:
        selector.close()
        if pidfd is not None:
            os.close(pidfd)
    return output, timed_out, exceeded


def _has_exited(pid: int) -> bool:
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_all(pid: int, uid: int | None) -> None:
    """SIGKILL the process group and, as root, every process of the sandbox uid (also those that
    left the group; one kill(-1) sweep, which new forks cannot outrun)."""
    import subprocess
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is not None:
        subprocess.run(["/bin/sh", "-c", "kill -9 -1 2>/dev/null; exit 0"], user=uid, group=uid, extra_groups=[],
                       env={}, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)


_ACCOUNTS: set[int] = set()


def _claim_uid() -> tuple[int, int]:
    """A uid from SANDBOX_UIDS that no account uses and no other execution (in any process) holds:
    (uid, the fd of its flock, released on close)."""
    import fcntl
    import pwd
    import random
    if not _ACCOUNTS:
        _ACCOUNTS.update(p.pw_uid for p in pwd.getpwall())
    locks = os.path.join(tempfile.gettempdir(), "posttrain-sandbox-uids")
    os.makedirs(locks, mode=0o700, exist_ok=True)
    info = os.lstat(locks)
    if info.st_uid != 0 or info.st_mode & 0o077 or not os.path.isdir(locks) or os.path.islink(locks):
        raise PermissionError(f"{locks} must be a directory owned by root with mode 0700")
    start = random.randrange(len(SANDBOX_UIDS))
    for i in range(len(SANDBOX_UIDS)):
        uid = SANDBOX_UIDS[(start + i) % len(SANDBOX_UIDS)]
        if uid in _ACCOUNTS:
            continue
        fd = os.open(os.path.join(locks, str(uid)), os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, fd
        except BlockingIOError:
            os.close(fd)
    raise RuntimeError(f"all {len(SANDBOX_UIDS)} sandbox uids are in use")


def _remove(workdir: str) -> None:
    import shutil
    if os.getuid() != 0:  # the program ran as us and may have removed our permissions
        for root, dirs, _ in os.walk(workdir):
            for d in dirs:
                path = os.path.join(root, d)
                if not os.path.islink(path):
                    try:
                        os.chmod(path, 0o700)
                    except OSError:
                        pass
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 2:
        _child_main(sys.argv[1])
    else:  # python -m posttrain.rewards.sandbox: print what is active here
        print(json.dumps(Sandbox().isolation(), indent=2))
