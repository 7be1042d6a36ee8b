"""The programs of the soak benchmark (soak_code_reward.py): a reward function in TRL's convention
that turns each completion into a program and runs it in the sandbox.

The policy's own text (the embedded model's; rarely valid Python) is the program's payload, run with
`exec`; around it each program does one of the things a hostile or broken program does: nothing
more, fork children that linger, start a daemon that leaves the session, fill its temporary
directories, allocate past its memory limit, spin until killed, flood its output, hold threads, or
open sockets. Which one is picked from the completion's hash, so every step runs a mix. The reward
is 1.0 when the program exited 0 within its limits (so the run has a learning signal), else 0.0;
the soak weighs it 0 and watches what the sandbox leaves behind, not the reward.
"""

from __future__ import annotations

import hashlib

from posttrain.rewards.sandbox import Limits, Sandbox

BEHAVIOURS = {
    "plain": "",
    "children": "import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)\n",
    "daemon": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n    os._exit(0)\n",
    "files": "import os, tempfile\nfor d in ('.', tempfile.gettempdir(), '/dev/shm'):\n    try:\n"
             "        open(os.path.join(d, 'junk.bin'), 'wb').write(b'x' * (1 << 20))\n    except OSError:\n        pass\n",
    "memory": "blocks = []\ntry:\n    while True:\n        blocks.append(bytearray(16 << 20))\nexcept MemoryError:\n    pass\n",
    "spin": "while True:\n    pass\n",
    "flood": "import sys\nwhile True:\n    sys.stdout.write('y' * 4096)\n",
    "threads": "import threading, time\nfor _ in range(8):\n    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n",
    "sockets": "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 22), timeout=0.2)\nexcept OSError:\n    pass\n",
}
_SANDBOX = Sandbox(Limits(timeout=1.5, cpu_seconds=1.0, memory_mb=256, max_processes=16, max_file_mb=4,
                          max_output_kb=64), workers=1)


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


def program_for(completion: str) -> str:
    names = sorted(BEHAVIOURS)
    behaviour = names[int(hashlib.sha256(completion.encode()).hexdigest(), 16) % len(names)]
    payload = f"try:\n    exec(compile({completion!r}, 'policy', 'exec'))\nexcept BaseException:\n    pass\n"
    return BEHAVIOURS[behaviour] + payload


def generated_programs(prompts, completions, **columns) -> list[float]:
    runs = _SANDBOX.run_many([(program_for(_text(c)), "", None) for c in completions])
    return [1.0 if run.ok else 0.0 for run in runs]
