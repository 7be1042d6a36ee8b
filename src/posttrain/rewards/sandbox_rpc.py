"""How checks reach a program without the program reaching the checks (inside the sandbox).

The program runs in its own process, which never holds a check, an expected value or the channel
that reports results. After its top-level code it *serves*: the checker process (sandbox_child.py)
runs the check snippets with the program's top-level names bound to `Remote` proxies, and each use
of a proxy (a call, an attribute, an index, len, iteration, str/repr) is one request over a pipe.

What comes back is **plain data** with exact builtin types (int, float, bool, None, str, bytes,
bytearray, complex, and list/tuple/dict/set/frozenset of those), rebuilt in the checker from JSON;
anything else comes back as another `Remote`, which refuses ==, !=, <, hash, bool and `in` (a
TypeError, so the check fails). Every comparison a check makes therefore runs in the checker, on
values the program could only have produced by computing them: a program can lie about its own
results, which is what any wrong program does, but cannot see the expected values, cannot rig a
comparison and cannot touch the verdict.

Lists, dicts, sets and bytearrays passed to a call that returns None come back with the program's
changes to them (in-place algorithms, by Python's convention, return None; a function that returns
a value cannot empty the list a check compares it with). A check can pass the program only plain
data and the program's own objects (not a function of its own). Modules are the checker's own: a
program name bound to a module, or named like a standard-library module (or `np`, `pd`), is the
checker's import of it, so `math.isclose` in a check is Python's whatever the program did to its
`math`. Standard library only: the sandbox's interpreter runs it.
"""

from __future__ import annotations

import builtins
import importlib
import json
import os
import sys
import types

MAX_DEPTH = 64
MAX_MESSAGE = 16 * 1024 * 1024  # bytes of one request or reply
NOT_PLAIN = ("the program returned an object that is not plain data (int, str, list, ...); a check can only "
             "compare plain values")
_MUTABLE = {list: "l", dict: "d", set: "S", bytearray: "Y"}
_SCALARS = {int: "i", float: "f", bool: "b", type(None): "n", str: "s", bytes: "y", bytearray: "Y", complex: "c"}
_CONTAINERS = {list: "l", tuple: "t", set: "S", frozenset: "F", dict: "d"}
# Names a check may use for a module it never imported (MBPP's `math.isclose`): always the checker's own.
CONVENTIONAL_ALIASES = {"np": "numpy", "pd": "pandas"}
_NOT_IMPORTED = {"this", "antigravity", "idlelib", "tkinter", "turtle", "turtledemo"}  # side effects on import
# Builtin exceptions a check's control flow treats specially (map/all/next stop at StopIteration):
# from the program they arrive as ProgramError.
_NOT_REBUILT = {"StopIteration", "StopAsyncIteration"}


class ProtocolError(Exception):
    """The program's side broke the protocol (a malformed or oversized reply)."""


class ProgramGone(BaseException):
    """The program's process ended while a check needed it. A BaseException, so that a check's own
    `except Exception` cannot swallow it (the checker fails the check regardless)."""


class ProgramError(Exception):
    """The program raised an exception that is not a builtin one: its type name and message."""


# ---- plain data, both sides ----------------------------------------------------------------------

def encode(value, handle, depth: int = 0):
    """`value` as JSON-able tagged data, exact types only; `handle(obj)` -> an id for anything else
    (None: refuse it)."""
    if depth > MAX_DEPTH:
        raise ValueError("the value is nested too deeply")
    kind = type(value)
    tag = _SCALARS.get(kind)
    if tag in ("i",):
        return [tag, hex(value)]
    if tag == "f":
        return [tag, value.hex()]
    if tag == "b":
        return [tag, value]
    if tag == "n":
        return [tag]
    if tag == "s":
        return [tag, value]
    if tag in ("y", "Y"):
        return [tag, value.hex()]
    if tag == "c":
        return [tag, value.real.hex(), value.imag.hex()]
    tag = _CONTAINERS.get(kind)
    if tag == "d":
        return [tag, [[encode(k, handle, depth + 1), encode(v, handle, depth + 1)] for k, v in value.items()]]
    if tag is not None:
        return [tag, [encode(v, handle, depth + 1) for v in value]]
    ident = handle(value)
    if ident is None:
        raise TypeError(f"a check can pass the program only plain data or the program's own objects, not "
                        f"{kind.__name__}")
    return ["h", ident]


def decode(data, remote, depth: int = 0):
    """The value `encode` described; `remote(id)` -> the object for a handle. Anything malformed is a
    ProtocolError."""
    if depth > MAX_DEPTH or type(data) is not list or not data or type(data[0]) is not str:
        raise ProtocolError("malformed value")
    tag, rest = data[0], data[1:]
    try:
        if tag == "n" and not rest:
            return None
        if tag == "b" and type(rest[0]) is bool:
            return rest[0]
        if tag == "s" and type(rest[0]) is str:
            return rest[0]
        if tag == "i" and type(rest[0]) is str:
            return int(rest[0], 16)
        if tag == "f" and type(rest[0]) is str:
            return float.fromhex(rest[0])
        if tag == "c" and len(rest) == 2:
            return complex(float.fromhex(rest[0]), float.fromhex(rest[1]))
        if tag in ("y", "Y") and type(rest[0]) is str:
            return (bytes if tag == "y" else bytearray).fromhex(rest[0])
        if tag == "h" and type(rest[0]) is int:
            return remote(rest[0])
        if tag in ("l", "t", "S", "F") and type(rest[0]) is list:
            items = [decode(v, remote, depth + 1) for v in rest[0]]
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag == "d" and type(rest[0]) is list:
            return {decode(k, remote, depth + 1): decode(v, remote, depth + 1) for k, v in rest[0]}
    except (ValueError, TypeError, IndexError, OverflowError) as exc:
        raise ProtocolError(f"malformed value: {exc}") from None
    raise ProtocolError(f"malformed value tagged {tag!r}")


class Channel:
    """Newline-delimited JSON over a pair of pipe fds."""

    def __init__(self, read_fd: int, write_fd: int):
        self.reader = os.fdopen(read_fd, "rb", buffering=65536)
        self.write_fd = write_fd

    def send(self, message) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        while data:
            data = data[os.write(self.write_fd, data):]

    def receive(self):
        """The next message, or None at end of file."""
        line = self.reader.readline(MAX_MESSAGE + 1)
        if not line:
            return None
        if len(line) > MAX_MESSAGE or not line.endswith(b"\n"):
            raise ProtocolError("a message over the size limit")
        try:
            return json.loads(line)
        except ValueError:
            raise ProtocolError("a message that is not JSON") from None


# ---- the program's side ------------------------------------------------------------------------

def serve(namespace: dict, channel: Channel) -> None:
    """Announce the program's top-level names, then answer requests until the checker is done."""
    objects: list = []

    def handle(obj):
        objects.append(obj)
        return len(objects) - 1

    names = [[name, ["m", value.__name__] if type(value) is types.ModuleType else _encode_or_handle(value, handle)]
             for name, value in list(namespace.items()) if not name.startswith("__") and not hasattr(builtins, name)]
    channel.send({"names": names})
    while True:
        request = channel.receive()
        if request is None:
            return
        channel.send(_answer(request, objects, handle))


def _encode_or_handle(value, handle):
    try:
        return encode(value, handle)
    except (ValueError, RecursionError):  # a cyclic or very deep structure: keep it as an object
        return ["h", handle(value)]


def _answer(request: dict, objects: list, handle) -> dict:
    try:
        target = objects[request["h"]]
        op = request["op"]
        if op == "call":
            args = [decode(a, objects.__getitem__) for a in request["a"]]
            kwargs = {k: decode(v, objects.__getitem__) for k, v in request["k"]}
            value = target(*args, **kwargs)
            changed = [[i, encode(a, handle)] for i, a in enumerate(args) if type(a) in _MUTABLE] if value is None else []
            return {"v": _encode_or_handle(value, handle), "m": changed}
        if op == "next":
            try:
                return {"v": _encode_or_handle(next(target), handle)}
            except StopIteration:
                return {"stop": True}
        value = {"getattr": lambda: getattr(target, request["name"]),
                 "setattr": lambda: setattr(target, request["name"], decode(request["v"], objects.__getitem__)),
                 "getitem": lambda: target[decode(request["key"], objects.__getitem__)],
                 "setitem": lambda: target.__setitem__(decode(request["key"], objects.__getitem__),
                                                       decode(request["v"], objects.__getitem__)),
                 "len": lambda: len(target), "iter": lambda: iter(target),
                 "str": lambda: str(target), "repr": lambda: repr(target)}[op]()
        return {"v": _encode_or_handle(value, handle)}
    except BaseException as exc:  # noqa: BLE001 - the program's own failure, reported to the check
        return {"e": [type(exc).__name__, str(exc)[:2000]]}


# ---- the checker's side -----------------------------------------------------------------------

class Program:
    """The checker's connection to the program's process."""

    def __init__(self, channel: Channel):
        self.channel, self.broken = channel, None  # broken: why the program can no longer answer
        self.names: dict = {}

    def start(self) -> None:
        """Read the program's top-level names (each a plain value or a Remote)."""
        hello = self._receive()
        if type(hello) is not dict or type(hello.get("names")) is not list:
            self._break(ProtocolError("the program's first message is malformed"))
        for item in hello["names"]:
            if type(item) is not list or len(item) != 2 or type(item[0]) is not str or not item[0].isidentifier():
                self._break(ProtocolError("the program's first message is malformed"))
            name, value = item
            if name.startswith("__") or hasattr(builtins, name):  # never shadow a builtin
                continue
            module = _module_name(name, value)
            if module is None:
                self.names[name] = decode(value, self.remote)
            elif module not in _NOT_IMPORTED:
                self.names[name] = CheckerModule(module)

    def remote(self, ident: int) -> Remote:
        return Remote(self, ident)

    def request(self, message: dict, args: list | None = None):
        if self.broken is not None:
            raise self.broken
        self.channel.send(message)
        reply = self._receive()
        if type(reply) is not dict:
            self._break(ProtocolError("a malformed reply"))
        if "e" in reply:
            raise _program_exception(reply["e"])
        if reply.get("stop") is True and message["op"] == "next":
            raise StopIteration
        if "v" not in reply:
            self._break(ProtocolError("a malformed reply"))
        for item in reply.get("m", []) if args is not None else []:
            if type(item) is not list or len(item) != 2 or type(item[0]) is not int or not 0 <= item[0] < len(args):
                self._break(ProtocolError("a malformed reply"))
            _update_in_place(args[item[0]], decode(item[1], self.remote))
        return decode(reply["v"], self.remote)

    def _receive(self):
        try:
            message = self.channel.receive()
        except (ProtocolError, OSError) as exc:
            self._break(exc)
        if message is None:
            self._break(ProgramGone("the program's process ended"))
        return message

    def _break(self, reason: BaseException):
        self.broken = reason
        raise reason


class CheckerModule:
    """A module of the checker's own, imported on first use (the program may import numpy that no
    check touches): `math.isclose` in a check is Python's, whatever the program did to its `math`."""

    __slots__ = ("_name",)

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attribute: str):
        return getattr(importlib.import_module(object.__getattribute__(self, "_name")), attribute)

    def __repr__(self) -> str:
        return f"<the checker's module {object.__getattribute__(self, '_name')!r}>"


def _module_name(name: str, value) -> str | None:
    """The module the checker binds to `name` itself, or None for the program's value: a module the
    program bound (`["m", NAME]`), or any value under a standard-library module's name or alias."""
    if name in sys.stdlib_module_names or name in CONVENTIONAL_ALIASES:
        return CONVENTIONAL_ALIASES.get(name, name)
    if type(value) is list and len(value) == 2 and value[0] == "m" and type(value[1]) is str:
        return value[1]
    return None


def _program_exception(error) -> BaseException:
    if type(error) is not list or len(error) != 2 or not all(type(e) is str for e in error):
        return ProtocolError("a malformed error reply")
    name, message = error
    kind = getattr(builtins, name, None)
    if name not in _NOT_REBUILT and isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message)
        except TypeError:  # an exception type whose constructor takes other arguments
            pass
    return ProgramError(f"{name}: {message}")


def _update_in_place(original, changed) -> None:
    if type(original) is not type(changed):
        return
    if type(original) in (list, bytearray):
        original[:] = changed
    elif type(original) in (dict, set):
        original.clear()
        original.update(changed)


def _refuse(*_):
    raise TypeError(NOT_PLAIN)


class Remote:
    """An object of the program's, seen from a check: usable, never compared or truth-tested."""

    __slots__ = ("_program", "_id")
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __hash__ = __contains__ = _refuse

    def __init__(self, program: Program, ident: int):
        object.__setattr__(self, "_program", program)
        object.__setattr__(self, "_id", ident)

    def _ask(self, op: str, args: list | None = None, **fields):
        program = object.__getattribute__(self, "_program")
        return program.request({"op": op, "h": object.__getattribute__(self, "_id"), **fields}, args)

    def __call__(self, *args, **kwargs):
        handle = _handle_of
        return self._ask("call", list(args), a=[encode(a, handle) for a in args],
                         k=[[k, encode(v, handle)] for k, v in kwargs.items()])

    def __getattr__(self, name: str):
        return self._ask("getattr", name=name)

    def __setattr__(self, name: str, value) -> None:
        self._ask("setattr", name=name, v=encode(value, _handle_of))

    def __getitem__(self, key):
        return self._ask("getitem", key=encode(key, _handle_of))

    def __setitem__(self, key, value) -> None:
        self._ask("setitem", key=encode(key, _handle_of), v=encode(value, _handle_of))

    def __len__(self) -> int:
        return _exactly(int, self._ask("len"))

    def __iter__(self):
        iterator = self._ask("iter")
        if type(iterator) is not Remote:
            raise TypeError("the program's iterator came back as data")
        while True:
            try:
                value = iterator._ask("next")
            except StopIteration:
                return
            yield value

    def __str__(self) -> str:
        return _exactly(str, self._ask("str"))

    def __repr__(self) -> str:
        return _exactly(str, self._ask("repr"))


def _handle_of(obj):
    """Checker side: a Remote travels back as its id; nothing else of the checker's may travel."""
    return object.__getattribute__(obj, "_id") if type(obj) is Remote else None


def _exactly(kind: type, value):
    if type(value) is not kind:
        raise TypeError(f"the program answered with {type(value).__name__}, expected {kind.__name__}")
    return value


def run_checks(checks: list[str], program: Program, report) -> None:
    """Run each check snippet in one namespace holding the program's names; `report(i, passed)`.
    A check passes when it raises nothing and the program was still answering when it ended: once
    the program's side is gone or broke the protocol, no check passes (a check's own `except` clause
    cannot turn the program's exit into a pass)."""
    import traceback
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        program.start()
        namespace.update(program.names)
    except (ProtocolError, ProgramGone):
        pass  # program.broken says why
    for i, check in enumerate(checks):
        passed = False
        if program.broken is None:
            try:
                exec(compile(check, f"<test {i}>", "exec"), namespace)
                passed = program.broken is None
            except BaseException as exc:  # noqa: BLE001 - a failed check, shown on stderr
                traceback.print_exception(exc.with_traceback(exc.__traceback__.tb_next))
        report(i, passed)
