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

This file is the host side (`Sandbox`). What runs inside the child process is sandbox_child.py,
launched as a script by its own interpreter (`python -I sandbox_child.py JOB`); it imports only
the standard library, so the child starts fast.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from dataclasses import asdict, dataclass, field

from posttrain.rewards import sandbox_child
from posttrain.rewards.sandbox_child import SETUP_FAILED

SANDBOX_UIDS = range(64000, 65000)  # unused by Debian-style systems; existing accounts are skipped


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


_CHILD = os.path.realpath(sandbox_child.__file__)  # run as a script: see sandbox_child.py
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
_ISOLATION: dict = {}
_WORKDIR_PREFIX = "posttrain-sandbox-"  # + the trainer's pid: a killed trainer's are found and removed
_STALE_SECONDS = 600  # an execution lasts seconds; a dead trainer's directory this old is surely left over


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
        remove_left_over_workdirs()

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
        """Run `source` with `stdin`, then each snippet of `checks` against the program's names
        (`Execution.checks[i]`: snippet i ran without raising; see sandbox_rpc.py for how)."""
        import subprocess
        import time
        uid, lock_fd = _claim_uid() if os.getuid() == 0 else (None, None)
        workdir = tempfile.mkdtemp(prefix=f"{_WORKDIR_PREFIX}{os.getpid()}-")
        checks, proc = list(checks or []), None
        status_read, status_write = os.pipe()
        checks_read, checks_write = os.pipe() if checks else (None, None)
        started = time.monotonic()
        try:
            job_path = os.path.join(workdir, "job.json")
            with open(job_path, "w") as f:  # no checks in here: the program could read it before it is gone
                json.dump({"source": source, "limits": asdict(self.limits), "uid": uid, "status_fd": status_write,
                           "checks_fd": checks_read, "workdir": workdir, "namespaces": self.namespaces}, f)
            if uid is not None:
                os.chown(workdir, uid, uid)
            passed = tuple(fd for fd in (status_write, checks_read) if fd is not None)
            proc = subprocess.Popen([self.python, "-I", _CHILD, job_path], cwd=workdir, env={**_ENV, "HOME": workdir},
                                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, pass_fds=passed, start_new_session=True)
            for fd in passed:
                os.close(fd)
            status_write = checks_read = None
            writes = {proc.stdin.fileno(): (stdin.encode(), proc.stdin.close)} if stdin else {}
            if checks_write is not None:
                writes[checks_write] = (json.dumps(checks).encode(), lambda fd=checks_write: os.close(fd))
                checks_write = None  # _communicate closes it
            output, timed_out, exceeded = _communicate(proc, writes, status_read, self.limits,
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
            for fd in (status_read, status_write, checks_read, checks_write):
                if fd is not None:
                    os.close(fd)
            _remove(workdir)
            if lock_fd is not None:
                os.close(lock_fd)  # releases the uid
        text = {k: v.decode("utf-8", "replace") for k, v in output.items()}
        lines = text["status"].splitlines()
        first = lines[0] if lines else ""
        if not first.startswith("ready ") and not timed_out:
            from posttrain.errors import UserError
            reason = first[len(SETUP_FAILED) + 1:] if first.startswith(SETUP_FAILED) else \
                f"the sandbox process exited with {proc.returncode} before starting the program: {text['stderr'][-300:]!r}"
            raise UserError(f"code sandbox: {reason}")
        results = [False] * len(checks)
        for line in lines[1:]:  # written by the checker only: the program never holds this pipe
            parts = line.split(" ")
            if len(parts) == 3 and parts[0] == "check" and parts[1].isdigit() and int(parts[1]) < len(checks):
                results[int(parts[1])] = parts[2] == "1"
        isolation = json.loads(first.split(" ", 1)[1]) if first.startswith("ready ") else {}
        return Execution(returncode=None if timed_out or exceeded else proc.returncode, stdout=text["stdout"],
                         stderr=text["stderr"], timed_out=timed_out, output_exceeded=exceeded, checks=results,
                         isolation=isolation, wall_seconds=time.monotonic() - started)


def _communicate(proc, writes: dict, status_fd: int, limits: Limits, kill) -> tuple[dict, bool, bool]:
    """Feed each pipe of `writes` ({fd: (bytes, close)}: stdin, the checks); collect stdout, stderr and
    the status pipe (up to the cap) until the program exits, the wall deadline passes or the output
    passes its cap; then `kill` what is left and read on (a second at most) until the pipes close,
    which is when the last process holding them is gone. Every fd of `writes` is closed on return."""
    import selectors
    import time
    cap, deadline = limits.max_output_kb * 1024, time.monotonic() + limits.timeout
    streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr", status_fd: "status"}
    output = {name: bytearray() for name in streams.values()}
    selector = selectors.DefaultSelector()
    for fd in streams:
        selector.register(fd, selectors.EVENT_READ)
    pending = dict(writes)

    def finish(fd: int) -> None:
        selector.unregister(fd)
        pending.pop(fd)[1]()

    for fd in pending:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_WRITE)
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
                if key.fd in pending:
                    data, close = pending[key.fd]
                    try:
                        data = data[os.write(key.fd, data[:65536]):]
                    except BlockingIOError:
                        pass
                    except BrokenPipeError:  # it stopped reading
                        data = b""
                    pending[key.fd] = (data, close)
                    if not data:
                        finish(key.fd)
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
                if pidfd is not None:
                    selector.unregister(pidfd)
                for fd in list(pending):
                    finish(fd)
    finally:
        for fd in list(pending):
            finish(fd)
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


def remove_left_over_workdirs() -> list[str]:
    """Remove the working directories of trainers that were killed mid-execution (SIGKILL leaves them):
    those whose pid is gone and that are older than _STALE_SECONDS. Returns what was removed."""
    import glob
    import time
    removed = []
    for path in glob.glob(os.path.join(tempfile.gettempdir(), _WORKDIR_PREFIX + "*-*")):
        pid = os.path.basename(path)[len(_WORKDIR_PREFIX):].split("-", 1)[0]
        try:
            if not pid.isdigit() or time.time() - os.lstat(path).st_mtime < _STALE_SECONDS:
                continue
            os.kill(int(pid), 0)
            continue  # its trainer is alive
        except ProcessLookupError:
            pass
        except OSError:  # another user's trainer, or gone meanwhile
            continue
        _remove(path)
        removed.append(path)
    return removed


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


if __name__ == "__main__":  # python -m posttrain.rewards.sandbox: print what is active here
    print(json.dumps(Sandbox().isolation(), indent=2))
