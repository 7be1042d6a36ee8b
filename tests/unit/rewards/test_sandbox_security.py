"""Hostile programs against the real sandbox: each must fail or score 0 within its limits, leave no
process behind, and leave the test process (the "trainer") and its files untouched."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from posttrain.errors import UserError
from posttrain.rewards.code import code_tests
from posttrain.rewards.sandbox import SANDBOX_UIDS, Limits, Sandbox

LIMITS = Limits(timeout=2.0, cpu_seconds=1.0, memory_mb=256, max_processes=16, max_file_mb=4, max_output_kb=64)
AS_ROOT = os.getuid() == 0


SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user, unlike a Python under /root


@pytest.fixture(scope="module", params=["namespaces", "fallback"])
def sandbox(request) -> Sandbox:
    """The sandbox as this machine runs it, and its fallback for machines without namespaces (where,
    as root, the program's uid must be able to read the interpreter: the system Python)."""
    return sandbox_in_mode(request.param, LIMITS)


def sandbox_in_mode(mode: str, limits: Limits) -> Sandbox:
    if mode == "namespaces":
        return Sandbox(limits, workers=2)
    if AS_ROOT and not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"the fallback test needs {SYSTEM_PYTHON}")
    return Sandbox(limits, workers=2, python=SYSTEM_PYTHON if AS_ROOT else None, namespaces=False)


def _held_by_an_execution(uid: int) -> bool:
    """Whether a running execution (of any process, e.g. another test worker) holds `uid`'s lock: its
    processes are that execution's, not ones this test's sandbox left behind."""
    import fcntl
    import tempfile

    try:
        fd = os.open(os.path.join(tempfile.gettempdir(), "posttrain-sandbox-uids", str(uid)), os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def sandbox_processes() -> list[int]:
    """Live processes left by the sandbox: any process of a sandbox uid that no running execution
    holds, or any child of this process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:  # gone meanwhile
            continue
        uid, ppid, state = int(fields["Uid"].split()[0]), int(fields["PPid"]), fields["State"].split()[0]
        leaked_uid = uid in SANDBOX_UIDS and not _held_by_an_execution(uid)
        if state != "Z" and (leaked_uid or ppid == os.getpid()):  # zombies are dead, awaiting init
            found.append(int(entry))
    return found


def run_hostile(sandbox: Sandbox, source: str, stdin: str = "", checks=None, bound: float = LIMITS.timeout + 3.0):
    before = set(sandbox_processes())  # other tests' helpers (e.g. math-verify's worker) may already run
    started = time.monotonic()
    run = sandbox.run(source, stdin, checks)
    elapsed = time.monotonic() - started
    assert elapsed < bound, f"took {elapsed:.1f}s"
    assert set(sandbox_processes()) - before == set(), "the sandbox left processes behind"
    return run


def test_isolation_report_names_what_is_active(sandbox):
    isolation = sandbox.isolation()
    assert isolation["network"] in ("namespace", "audit hook")
    if AS_ROOT:
        uid = int(isolation["user"].split()[1])
        assert uid in SANDBOX_UIDS
    run = sandbox.run("import os, resource\nprint((os.getuid(), os.nice(0), resource.getrlimit(resource.RLIMIT_CPU),"
                      " resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_NPROC),"
                      " resource.getrlimit(resource.RLIMIT_FSIZE)))")
    uid, nice, cpu, memory, nproc, fsize = eval(run.stdout)
    assert uid in SANDBOX_UIDS if AS_ROOT else uid == os.getuid()
    assert nice == min(19, os.nice(0) + LIMITS.nice)
    assert cpu == (1, 2) and memory == (256 << 20,) * 2 and nproc == (16, 16) and fsize == (4 << 20,) * 2
    if isolation.get("private_dev"):  # no GPUs, disks or terminals
        devices = set(eval(sandbox.run("import os\nprint(os.listdir('/dev'))").stdout))
        assert devices <= {"null", "zero", "full", "random", "urandom", "shm", "fd", "stdin", "stdout", "stderr"}


def test_a_program_that_never_ends_is_killed_at_the_wall_timeout(sandbox):
    run = run_hostile(sandbox, "import time\nwhile True:\n    time.sleep(1)")
    assert run.timed_out and not run.ok and run.returncode is None
    assert LIMITS.timeout - 0.1 <= run.wall_seconds < LIMITS.timeout + 1.5


def test_infinite_loop_is_stopped_by_the_cpu_or_the_wall_limit(sandbox):
    run = run_hostile(sandbox, "while True:\n    pass")
    assert not run.ok and run.wall_seconds < LIMITS.timeout + 1.5
    assert run.timed_out or run.returncode == 128 + signal.SIGXCPU


def test_fork_bomb_is_capped_and_cleaned_up(sandbox):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    run = run_hostile(sandbox, bomb)
    assert not run.ok
    counter = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(60)\n"
               "            os._exit(0)\n        n += 1\nexcept OSError:\n    print(n, flush=True)")
    run = run_hostile(sandbox, counter)
    assert run.ok and 0 < int(run.stdout) < LIMITS.max_processes


@pytest.mark.parametrize("mode", ["namespaces", "fallback"])
def test_memory_bomb_fails_with_memory_error(mode):
    # Faulting in 256 MB costs ~0.2 CPU-s here but over 1 s on a loaded CI machine, where the CPU cap
    # (SIGXCPU, exit 152) then fired first. This test is about the memory cap, so the CPU cap is wide.
    limits = dataclasses.replace(LIMITS, cpu_seconds=20.0, timeout=30.0)
    sandbox = sandbox_in_mode(mode, limits)
    for bomb in ("x = bytearray(1 << 30)", "a = []\nwhile True:\n    a.append(bytearray(1 << 24))"):
        run = run_hostile(sandbox, bomb, bound=limits.timeout + 3.0)
        assert run.returncode == 1 and "MemoryError" in run.stderr


def test_huge_output_is_cut_and_the_program_killed(sandbox):
    for stream in ("stdout", "stderr"):
        run = run_hostile(sandbox, f"import sys\nwhile True:\n    sys.{stream}.write('x' * 10000)")
        assert run.output_exceeded and not run.ok and run.wall_seconds < LIMITS.timeout
        assert len(run.stdout) + len(run.stderr) <= LIMITS.max_output_kb * 1024 + 65536


def test_writing_outside_the_sandbox_changes_nothing(sandbox, tmp_path):
    outside = tmp_path / "trainer_file.txt"
    outside.write_text("original")
    home = os.path.expanduser("~")
    targets = [str(outside), str(tmp_path / "new_file.txt"), os.path.join(home, "posttrain_sandbox_pwned"),
               "/etc/posttrain_sandbox_pwned", os.path.join(os.getcwd(), "posttrain_sandbox_pwned")]
    program = (f"targets = {targets!r}\nfor t in targets:\n    try:\n        open(t, 'w').write('pwned')\n"
               "        print('wrote', t)\n    except OSError as e:\n        print('refused', t, e)\n"
               "open('inside.txt', 'w').write('fine')\nprint(open('inside.txt').read())")
    run = run_hostile(sandbox, program)
    assert run.ok and "wrote" not in run.stdout and run.stdout.strip().endswith("fine")
    assert outside.read_text() == "original" and sorted(p.name for p in tmp_path.iterdir()) == ["trainer_file.txt"]
    assert not any(os.path.exists(t) for t in targets[2:])


def test_writing_files_is_capped_by_the_file_size_limit(sandbox):
    run = run_hostile(sandbox, "with open('big', 'wb') as f:\n    f.write(b'x' * (8 << 20))")
    assert not run.ok and ("File too large" in run.stderr or "No space left" in run.stderr
                           or run.returncode == 128 + signal.SIGXFSZ)


def test_system_secrets_are_unreadable(sandbox):
    # /etc/shadow and its kin: readable by root only, so never by the program (its own uid, or the trainer's
    # unprivileged one); root's home is hidden or closed; /proc/kcore needs CAP_SYS_RAWIO
    paths = [p for p in ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/sudoers", "/root/.bash_history",
                         "/root/.ssh/id_rsa", "/proc/kcore") if os.path.lexists(p)]
    program = (f"for p in {paths!r}:\n    try:\n        print('read', p, open(p, 'rb').read(100))\n"
               "    except OSError as e:\n        print('refused', p, type(e).__name__)")
    run = run_hostile(sandbox, program)
    assert run.ok and run.stdout.count("refused") == len(paths) and "read " not in run.stdout, run.stdout
    if AS_ROOT and os.path.exists("/etc/shadow"):
        hashes = [f.split(":")[1] for f in open("/etc/shadow").read().splitlines() if f.count(":") > 2]
        assert not any(h and len(h) > 3 and h in run.stdout + run.stderr for h in hashes)


def test_disk_floods_are_capped_and_leave_nothing_behind(sandbox):
    """Many files, not one big one: the private tmpfs (working dir, /tmp, /var/tmp, /dev/shm) are each capped at
    max_file_mb and 4096 inodes; afterwards nothing is left. Without namespaces /tmp is the host's (a documented
    limit), so the fallback floods its working directory only (bounded here at 24 MB)."""
    marker = f"posttrain-flood-{os.getpid()}"
    dirs = [".", "/tmp", "/var/tmp", "/dev/shm"] if sandbox.namespaces else ["."]
    program = (f"import os\nfor d in {dirs!r}:\n    mb = files = 0\n    try:\n        for i in range(24):\n"
               f"            with open(os.path.join(d, '{marker}-%d' % i), 'wb') as f:\n"
               "                f.write(b'x' * (1 << 20))\n            mb += 1\n    except OSError:\n        pass\n"
               f"    try:\n        for i in range(5000):\n            open(os.path.join(d, '{marker}-e%d' % i), 'w').close()\n"
               "            files += 1\n    except OSError:\n        pass\n    print(d, mb, files, flush=True)")
    run = run_hostile(sandbox, program)
    written = {d: (int(mb), int(files)) for d, mb, files in (line.split() for line in run.stdout.splitlines())}
    if sandbox.isolation().get("mount_namespace"):
        assert set(written) == set(dirs), run.stderr
        assert all(mb <= LIMITS.max_file_mb and files < 4096 for mb, files in written.values()), written
    import glob
    left = [p for d in ("/tmp", "/var/tmp", "/dev/shm", tempfile.gettempdir()) for p in
            glob.glob(os.path.join(d, f"{marker}*")) + glob.glob(os.path.join(d, "posttrain-sandbox-*", f"{marker}*"))]
    assert left == []


def test_parent_environment_and_private_files_stay_secret(sandbox, tmp_path, monkeypatch):
    secret = "s3cr3t-4a6f0d"
    monkeypatch.setenv("POSTTRAIN_TEST_SECRET", secret)
    private = tmp_path / "private.txt"
    private.write_text(secret)
    private.chmod(0o600)
    program = (f"import os\nprint(dict(os.environ))\nfor p in ['/proc/{os.getpid()}/environ', '/proc/%d/environ' % os.getppid(),"
               f" '/proc/1/environ', {str(private)!r}]:\n    try:\n        print(open(p, 'rb').read())\n"
               "    except OSError as e:\n        print('refused', p, e)")
    run = run_hostile(sandbox, program)
    assert run.ok and "refused" in run.stdout
    assert secret not in run.stdout and secret not in run.stderr
    environment = eval(run.stdout.splitlines()[0])
    assert set(environment) <= {"PATH", "LANG", "LC_ALL", "HOME", "LC_CTYPE"}


def test_sockets_cannot_reach_a_listener_on_localhost(sandbox):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        run = run_hostile(sandbox, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')")
        assert not run.ok and "connected" not in run.stdout
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_the_fallback_audit_hook_refuses_internet_sockets():
    # What runs when no network namespace can be made: checked in a real interpreter.
    probe = ("import sys, socket\nfrom posttrain.rewards.sandbox_child import _refuse_internet_sockets\n"
             "sys.addaudithook(_refuse_internet_sockets)\na, b = socket.socketpair()\n"
             "try:\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM)\nexcept PermissionError:\n    print('refused')")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "refused", out.stderr


def test_killing_the_parent_or_the_trainer_fails(sandbox):
    me = os.getpid()
    program = ("import os, signal\nfor pid in (os.getppid(), %d, -1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
               "    except OSError as e:\n        print('refused', pid, e)\ntry:\n    os.killpg(os.getpgid(%d), signal.SIGKILL)\n"
               "except OSError as e:\n    print('refused group', e)\nprint('alive')" % (me, me))
    run = run_hostile(sandbox, program)
    os.kill(me, 0)  # still here
    assert run.returncode in (0, 128 + signal.SIGKILL)  # kill(-1) may take the program down with everything it owns


def test_processes_that_leave_the_group_die_with_the_run(sandbox):
    daemon = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n"
              "    os._exit(0)\nprint('parent done')")
    run = run_hostile(sandbox, daemon, bound=LIMITS.timeout)  # the pipes the daemon holds must not keep us waiting
    assert run.ok and run.stdout == "parent done\n"


def test_forged_results_and_early_exits_score_zero():
    reward = code_tests(timeout=2, memory_mb=256, workers=2)
    before = set(sandbox_processes())
    tests = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
    hacks = ["import os\nos._exit(0)",
             "import sys\nsys.exit(0)",
             "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'x check 0 1\\nx check 1 1\\n')\n"
             "    except OSError:\n        pass",
             "print('ok check 0 1')\nraise SystemExit(0)"]
    assert reward(prompts=[""] * len(hacks), completions=hacks, tests=[tests] * len(hacks)) == [0.0] * len(hacks)
    assert set(sandbox_processes()) - before == set()


def test_host_resources_are_not_lowered_by_runs(sandbox):
    before = resource.getrlimit(resource.RLIMIT_NPROC), os.nice(0), dict(os.environ)
    sandbox.run("print(1)")
    assert (resource.getrlimit(resource.RLIMIT_NPROC), os.nice(0), dict(os.environ)) == before


def test_a_program_that_closes_its_pipes_still_ends_at_the_timeout(sandbox):
    program = "import os, time\nfor fd in range(64):\n    try:\n        os.close(fd)\n    except OSError:\n        pass\ntime.sleep(60)"
    run = run_hostile(sandbox, program)
    assert run.timed_out and run.wall_seconds < LIMITS.timeout + 1.5


UNPRIVILEGED_SCRIPT = """
import json, os, sys
from posttrain.rewards.sandbox import Sandbox, Limits
sandbox = Sandbox(Limits(timeout=2.0, cpu_seconds=1.0, memory_mb=256, max_processes=16, max_file_mb=4))
me, report = os.getpid(), {"isolation": sandbox.isolation()}
report["environ"] = sandbox.run(f"print(open('/proc/{me}/environ', 'rb').read())").stdout
report["kill"] = sandbox.run(f"import os\\nos.kill({me}, 9)\\nprint('killed')").stdout
report["bomb"] = sandbox.run("import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass").ok
report["socket"] = sandbox.run("import socket\\nsocket.create_connection(('127.0.0.1', %d), timeout=1)").ok
report["write"] = sandbox.run("open('%s', 'w').write('pwned')").ok
report["left"] = sorted(e for e in os.listdir("/proc") if e.isdigit() and int(e) != me and os.stat(f"/proc/{e}").st_uid == os.getuid()
                        and open(f"/proc/{e}/stat").read().rsplit(")", 1)[1].split()[0] != "Z")
print(json.dumps(report))
"""


def readable_copy_of_the_package() -> str:
    """A world-readable copy of the posttrain sources (no model weights), for another user's Python."""
    import posttrain

    root = tempfile.mkdtemp(prefix="posttrain-src-")
    shutil.copytree(os.path.dirname(posttrain.__file__), os.path.join(root, "posttrain"),
                    ignore=shutil.ignore_patterns("model", "__pycache__"))
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)
    return root


@pytest.mark.skipif(not AS_ROOT or not os.path.exists("/usr/bin/setpriv") or not os.path.exists(SYSTEM_PYTHON),
                    reason="needs root (to become an unprivileged user), setpriv and the system Python")
def test_unprivileged_trainer_gets_user_namespaces_or_the_fallback(tmp_path):
    """The same hostile programs from a trainer that runs as an ordinary user (here: nobody)."""
    outside = tmp_path / "mine.txt"
    outside.write_text("original")
    os.chmod(tmp_path, 0o777)  # the user may write here: the sandbox must stop its programs doing so
    os.chmod(outside, 0o666)
    src = readable_copy_of_the_package()  # the checkout may sit in a directory nobody cannot enter
    try:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            script = UNPRIVILEGED_SCRIPT % (listener.getsockname()[1], outside)
            out = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", SYSTEM_PYTHON, "-c",
                                  script], capture_output=True, text=True, timeout=60, cwd="/",
                                 env={"PATH": "/usr/bin:/bin", "PYTHONPATH": src, "SECRET_TOKEN": "s3cr3t-77"})
    finally:
        shutil.rmtree(src, ignore_errors=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["isolation"]["user"] == "same user (not root)"
    assert not report["bomb"] and not report["socket"] and report["left"] == []
    if report["isolation"]["pid_namespace"]:  # without one, a same-user program can read and signal the trainer
        assert "s3cr3t-77" not in report["environ"] and "killed" not in report["kill"]
    if report["isolation"]["mount_namespace"]:
        assert not report["write"] and outside.read_text() == "original"


@pytest.mark.skipif(not AS_ROOT, reason="only root drops to another uid")
def test_an_interpreter_the_sandbox_user_cannot_read_is_a_clear_error():
    stdlib = os.path.dirname(os.__file__)
    parents = [os.path.dirname(stdlib)]
    while parents[-1] != "/":
        parents.append(os.path.dirname(parents[-1]))
    if all(os.stat(p).st_mode & 0o001 for p in parents):
        pytest.skip("this Python is readable by every user")
    with pytest.raises(UserError, match="cannot read the Python standard library.*code_tests:python=PATH"):
        Sandbox(LIMITS, namespaces=False).run("print(1)")
