"""The child side of the sandbox: what runs inside the sandboxed process, before and as the program.

`Sandbox.run` (sandbox.py) writes the job (source, limits, uid, status fd, checks fd, working
directory) to a JSON file in the fresh working directory and launches this file as a script,
`PYTHON -I sandbox_child.py JOB`, in a new session with a scrubbed environment and two pipes passed
in: the status pipe (results to the host) and, when there are check snippets, the checks pipe (the
snippets from the host). `_child_main` reads and deletes the job, sets the resource limits and
niceness, enters the namespaces the kernel allows, and forks `_init` (pid 1 of the PID namespace
when there is one), which makes itself non-dumpable, sets up the private filesystem and forks:

- the **checker** (only with checks): reads the snippets from the checks pipe, drops to the
  sandbox uid and capabilities, stays non-dumpable (the program cannot read its memory or open its
  fds), and runs the snippets against the program's names (sandbox_rpc.py), writing `check I 0|1`
  on the status pipe;
- the **program**: drops to the sandbox uid and capabilities, writes `ready ISOLATION` on the status
  pipe and closes it, runs the source as `__main__`, then answers the checker's requests. It never
  holds a snippet, an expected value or the status pipe.

A setup error is reported as `setup-failed REASON` (exit status 125).

It imports only the standard library and nothing of `posttrain`: the interpreter that runs it may
be another Python (`code_tests:python=PATH`), `-I` keeps the script's directory off `sys.path`,
and the child starts fast.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
# The top-level directories a program sees (read-only); every other one (/home, /root, /work, /opt,
# /srv, /var, /sys, ...: where datasets and their expected outputs live) is an empty tmpfs, except
# the directories of the interpreter, bound back.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", "/dev", "/tmp")
DEVICES = ("null", "zero", "full", "random", "urandom")  # all of /dev a program sees (no GPUs, no disks)
SETUP_FAILED = "setup-failed"

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 0x1000, 0x4000, 0x40000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, AT_RECURSIVE, AT_FDCWD = 1, 2, 0x8000, -100
SYS_MOUNT_SETATTR = 442  # the same number on x86_64 and aarch64
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38


def _load_rpc():
    """sandbox_rpc.py from this file's directory: loaded now, before the mounts may hide it."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_rpc.py")
    spec = importlib.util.spec_from_file_location("posttrain_sandbox_rpc", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
        # After the uid maps are written (they need a dumpable process): our fds (status, checks) stay ours.
        _ok(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable")
    except (OSError, ValueError) as exc:
        _fail(status, exc)
    init = os.fork()
    if init == 0:
        _init(job, status, namespaces, as_root)
    status.close()
    if job["checks_fd"] is not None:
        os.close(job["checks_fd"])
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
    """The parent of the checker and the program: pid 1 of the PID namespace when there is one, so
    that when they exit, the kernel kills everything they left behind."""
    filesystem = {}
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        _ok(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable")  # inherited by the checker's fork
        if "mount" in namespaces:
            filesystem = _private_filesystem(job, as_root)
        os.chdir(job["workdir"])
    except OSError as exc:
        _fail(status, exc)
    checks_fd, channel = job["checks_fd"], None
    children = []
    if checks_fd is not None:
        to_program, to_checker = os.pipe(), os.pipe()
        checker = os.fork()
        if checker == 0:
            os.close(to_program[0])
            os.close(to_checker[1])
            _run_checker(job, status, namespaces, as_root, checks_fd, (to_checker[0], to_program[1]))
        os.close(checks_fd)  # only the checker holds the snippets
        os.close(to_program[1])
        os.close(to_checker[0])
        channel = (to_program[0], to_checker[1])
        children.append(checker)
    program = os.fork()
    if program == 0:
        _run_program(job, status, namespaces, filesystem, as_root, channel)
    for fd in channel or ():
        os.close(fd)
    status.close()
    os._exit(_wait_for(program, children))


def _wait_for(pid: int, others: list[int] = ()) -> int:
    """`pid`'s exit status, once it and `others` have ended; also reaps orphans, which pid 1 inherits."""
    code, waiting = None, {pid, *others}
    while waiting:
        try:
            done, wait_status = os.wait()
        except ChildProcessError:
            break
        waiting.discard(done)
        if done == pid:
            code = os.waitstatus_to_exitcode(wait_status)
            code = code if code >= 0 else 128 - code
    return 1 if code is None else code


def _private_filesystem(job: dict, as_root: bool) -> dict:
    """Read-only view of the host's filesystem with private homes and private writable tmpfs."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks back to the host
    keep = _interpreter_dirs()
    hide = _private_dirs(keep, as_root)
    keep_fds = {k: os.open(k, os.O_PATH | os.O_DIRECTORY) for k in keep if any(_inside(k, h) for h in hide)}
    for path in hide:
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    hidden_files = _top_level_files()
    for path in hidden_files:  # a data set kept as a single file at / (/dataset.jsonl): empty from here
        _mount("/dev/null", path, None, MS_BIND)
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
    return {"read_only_root": read_only, "hidden": hide + hidden_files, "private_dev": private_dev,
            "private_proc": private_proc}


def _top_level_files() -> list[str]:
    paths = (os.path.join("/", name) for name in sorted(os.listdir("/")))
    return [p for p in paths if not os.path.islink(p) and os.path.isfile(p)]


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
    """Every top-level directory but SYSTEM_DIRS, home directories, and (as root) each directory above
    the interpreter that others cannot enter."""
    import pwd
    found = {os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir), "/root"}
    found |= {path for path in (os.path.join("/", name) for name in os.listdir("/"))
              if path not in SYSTEM_DIRS and os.path.isdir(path) and not os.path.islink(path)}
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


def _drop_privileges(job: dict, namespaces: tuple, as_root: bool) -> None:
    """Become the sandbox uid (as root) with no capabilities, no new privileges and the process cap."""
    uid = job["uid"]
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
    _ok(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable")  # a uid change may have reset it
    stdlib = os.path.dirname(os.__file__)
    if not os.access(stdlib, os.R_OK | os.X_OK):
        raise OSError(13, f"the sandbox user (uid {os.getuid()}) cannot read the Python standard library "
                          f"at {stdlib}; use a Python every user can read (code_tests:python=PATH)")
    if "net" not in namespaces:
        sys.addaudithook(_refuse_internet_sockets)


def _run_checker(job: dict, status, namespaces: tuple, as_root: bool, checks_fd: int, channel: tuple) -> None:
    try:
        with os.fdopen(checks_fd, "rb") as f:  # before the uid change: nothing of the program's can read it
            checks = json.loads(f.read())
        _drop_privileges(job, namespaces, as_root)
    except (OSError, ValueError) as exc:
        _fail(status, exc)
    del job
    program = _rpc.Program(_rpc.Channel(*channel))
    _rpc.run_checks(checks, program, lambda i, passed: status.write(f"check {i} {int(passed)}\n"))
    _flush_and_exit(0)


def _run_program(job: dict, status, namespaces: tuple, filesystem: dict, as_root: bool, channel) -> None:
    try:
        _drop_privileges(job, namespaces, as_root)
    except OSError as exc:
        _fail(status, exc)
    isolation = {"user": f"uid {job['uid']}" if as_root else "same user (not root)",
                 "network": "namespace" if "net" in namespaces else "audit hook",
                 "pid_namespace": "pid" in namespaces, "mount_namespace": "mount" in namespaces,
                 "checks": "separate process", **filesystem}
    status.write(f"ready {json.dumps(isolation)}\n")
    status.close()  # the program never holds the channel that reports results
    source = job["source"]
    del job
    code, namespace = _execute(source)
    if channel is not None:
        try:
            _rpc.serve(namespace, _rpc.Channel(*channel))
        except Exception:  # noqa: BLE001 - the checker went away, or the program broke its own channel
            pass
    _flush_and_exit(code)


def _refuse_internet_sockets(event: str, args: tuple) -> None:
    # No imports in here: the hook sees every import's own events.
    if event == "socket.__new__" and len(args) > 1 and args[1] in (2, 10):  # AF_INET, AF_INET6 on Linux
        raise PermissionError("network access is disabled in the sandbox")


def _execute(source: str) -> tuple[int, dict]:
    """Run the program as __main__: (its exit status, its namespace)."""
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
    return code & 0xFF, module.__dict__


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - the program may have closed it
            pass
    os._exit(code)


def _fail(status, exc: OSError) -> None:
    status.write(f"{SETUP_FAILED} {exc}\n")
    os._exit(125)


_rpc = _load_rpc() if __name__ == "__main__" else None

if __name__ == "__main__":
    _child_main(sys.argv[1])
