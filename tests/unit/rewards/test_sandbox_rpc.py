"""How checks reach the program: plain data with exact types, opaque handles for everything else,
and what a check can still do with the program's objects. The wire functions are checked directly;
the behaviour through the real sandbox (two processes)."""

from __future__ import annotations

import math

import pytest

from posttrain.rewards.sandbox import Limits, Sandbox
from posttrain.rewards.sandbox_rpc import NOT_PLAIN, ProtocolError, Remote, decode, encode


def _no_handles(obj):
    return None


PLAIN = [0, -7, 2**200, 3.5, -0.0, math.inf, True, False, None, "héllo\n", b"\x00\xff", bytearray(b"ab"), 1 + 2j,
         [1, [2, (3, "x")]], (), {"a": [1, 2], 3: None, (1, 2): {4.5}}, {1, 2}, frozenset({"z"})]


@pytest.mark.parametrize("value", PLAIN, ids=[repr(v)[:20] for v in PLAIN])
def test_plain_values_travel_with_their_exact_types(value):
    back = decode(encode(value, _no_handles), remote=None)
    assert back == value and type(back) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)


def test_nan_travels_and_subclasses_never_pass_as_plain():
    assert math.isnan(decode(encode(math.nan, _no_handles), remote=None))

    class Rigged(int):
        def __eq__(self, other):
            return True

    handles = []
    assert encode(Rigged(3), lambda obj: handles.append(obj) or len(handles) - 1) == ["h", 0]
    assert encode([1, Rigged(2)], lambda obj: 7) == ["l", [["i", "0x1"], ["h", 7]]]
    with pytest.raises(TypeError, match="only plain data or the program's own objects"):
        encode(lambda: 1, _no_handles)


@pytest.mark.parametrize("message", [["q", 1], [], "s", ["i", 5], ["l", "notalist"], ["d", [[["h", 0], ["n"]]]],
                                     ["f", "zz"], ["b", 1], ["n", 1]])
def test_malformed_wire_values_are_protocol_errors(message):
    with pytest.raises(ProtocolError):
        decode(message, remote=lambda ident: Remote(None, ident))


def test_a_handle_refuses_comparison_truth_hash_and_membership():
    handle = Remote(None, 0)
    for attempt in (lambda: handle == 3, lambda: handle != 3, lambda: 3 == handle, lambda: handle < 1, lambda: bool(handle),
                    lambda: hash(handle), lambda: 1 in handle, lambda: handle in [1, 2], lambda: [handle] == [3],
                    lambda: not handle):
        with pytest.raises(TypeError, match="not plain data"):
            attempt()
    assert NOT_PLAIN.startswith("the program returned an object that is not plain data")


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(Limits(timeout=5.0, cpu_seconds=3.0, memory_mb=512), workers=2)


STACK = """
class Stack:
    def __init__(self):
        self.items = []
    def push(self, x):
        self.items.append(x)
    def pop(self):
        return self.items.pop()
    def __len__(self):
        return len(self.items)
    def __str__(self):
        return f"Stack{self.items}"

def sort_in_place(values):
    values.sort()

def squares(n):
    for i in range(n):
        yield i * i

def parse(text):
    if not text.isdigit():
        raise ValueError(f"not a number: {text}")
    return int(text)

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

LIMIT = 10
"""

CHECKS = [
    "s = Stack()\ns.push(1)\ns.push(2)\nassert s.pop() == 2 and len(s) == 1 and str(s) == 'Stack[1]'",
    "v = [3, 1, 2]\nsort_in_place(v)\nassert v == [1, 2, 3]",
    "assert list(squares(4)) == [0, 1, 4, 9] and sum(squares(3)) == 5",
    "try:\n    parse('x')\n    raise AssertionError('no error')\nexcept ValueError as e:\n    assert 'not a number' in str(e)",
    "p = Point(2, 3)\nassert (p.x, p.y) == (2, 3)",
    "assert LIMIT == 10",
    "def check(f):\n    assert f('12') == 12\ncheck(parse)",
    "assert Point(1, 2) == Point(1, 2)",  # objects are not plain data: compared, they fail the check
    "assert Stack()",  # nor truth-tested
]


def test_checks_use_the_programs_objects_through_the_channel(sandbox):
    run = sandbox.run(STACK, checks=CHECKS)
    assert run.checks == [True] * 7 + [False, False], run.stderr
    assert "not plain data" in run.stderr
    assert run.isolation["checks"] == "separate process"


def test_a_program_that_exits_while_checked_fails_that_check_and_the_rest(sandbox):
    program = "import os\ndef add(a, b):\n    return a + b\ndef leave():\n    os._exit(0)\n"
    checks = ["assert add(1, 2) == 3", "try:\n    leave()\nexcept BaseException:\n    pass", "assert True"]
    assert sandbox.run(program, checks=checks).checks == [True, False, False]


def test_a_program_that_exits_before_its_checks_fails_them_all(sandbox):
    assert sandbox.run("import os\nos._exit(0)", checks=["assert True", "x = 1"]).checks == [False, False]


def test_the_programs_names_never_shadow_a_builtin(sandbox):
    program = "def abs(x):\n    return 0\ndef f(x):\n    return x + 1\n"
    assert sandbox.run(program, checks=["assert abs(f(1) - 3) < 0.5"]).checks == [False]


def test_modules_are_the_checkers_own_and_stopiteration_is_not_rebuilt(sandbox):
    program = ("import math\nimport json as serializer\nmath.isclose = lambda *a, **k: True\n"
               "def area(r):\n    return 3.0\ndef first(xs):\n    raise StopIteration\n")
    checks = ["assert math.isclose(area(1), math.pi)",  # the checker's math: the program's patch is not seen
              "assert serializer.dumps([1]) == '[1]'",  # a module bound under another name: imported by the checker
              "assert next(iter([0]), 'end') == 0 and all(map(first, [1]))"]  # StopIteration would end map() as a pass
    run = sandbox.run(program, checks=checks)
    assert run.checks == [False, True, False], run.stderr
    assert "ProgramError: StopIteration" in run.stderr


def test_arguments_come_back_changed_only_from_calls_that_return_none(sandbox):
    program = "def sort_in_place(xs):\n    xs.sort()\ndef pop_first(xs):\n    return xs.pop(0)\n"
    checks = ["v = [2, 1]\nsort_in_place(v)\nassert v == [1, 2]",
              "v = [5, 6]\nassert pop_first(v) == 5 and v == [5, 6]"]  # returned a value: v is the check's own copy
    assert sandbox.run(program, checks=checks).checks == [True, True]
