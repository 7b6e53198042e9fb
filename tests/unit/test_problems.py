"""Every file Cloudrone reads fails the same way: FILE:LINE KEY: what; fix. Never a traceback."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudrone.problems import MAX_BYTES, ConfigProblems, Problems, key_of, read_yaml


def test_keys_read_as_written():
    assert key_of(["drones", 2, "name"]) == "drones[2].name"
    assert key_of(["battery", "ina219", "address"]) == "battery.ina219.address"
    assert key_of([]) == ""


def test_problems_sit_at_their_lines(tmp_path):
    f = tmp_path / "x.yml"
    f.write_text("a: 1\nb:\n  c: [1, 2]\n")
    data, problems = read_yaml(f)
    assert data == {"a": 1, "b": {"c": [1, 2]}}
    assert not problems
    problems.add(["b", "c", 1], "2 is odd; use an even number")
    problems.add(["missing", "deep"], "is required; write missing: {deep: 1}")
    assert problems.lines == [
        f"{f}:3 b.c[1]: 2 is odd; use an even number",
        f"{f}:1 missing.deep: is required; write missing: {{deep: 1}}",
    ]
    with pytest.raises(ConfigProblems) as caught:
        problems.raise_if_any()
    assert caught.value.problems == problems.lines


def test_a_file_without_yaml_tree_still_names_itself():
    p = Problems("flight.yml")
    p.add(["mavlink", "listen"], "is wrong; fix it")
    assert p.lines == ["flight.yml mavlink.listen: is wrong; fix it"]


class Custom(ConfigProblems):
    pass


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "nope.yml", "nope.yml: no such file; look in /x"),
        (lambda d: (d / "dir.yml").mkdir() or d / "dir.yml", "is a folder, not a"),
        (lambda d: (d / "b.yml").write_bytes(b"a: \xff\xfe\n") and d / "b.yml", "is not UTF-8"),
        (lambda d: (d / "y.yml").write_text("a: [1,\n") and d / "y.yml", "y.yml:2: not valid YAML"),
        (lambda d: (d / "l.yml").write_text("- 1\n- 2\n") and d / "l.yml", "must be a mapping"),
        (lambda d: (d / "s.yml").write_text("just text\n") and d / "s.yml", "not str"),
        (
            lambda d: (d / "big.yml").write_text("a: " + "x" * MAX_BYTES) and d / "big.yml",
            "too large",
        ),
        (
            lambda d: (d / "deep.yml").write_text("[" * 5000 + "]" * 5000) and d / "deep.yml",
            "",
        ),
    ],
)
def test_every_unreadable_file_is_one_clear_line(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(Custom) as caught:
        read_yaml(path, error=Custom, missing_fix="look in /x")
    (line,) = caught.value.problems
    assert line.startswith(str(path)) and expected in line


@pytest.mark.skipif(os.geteuid() == 0, reason="not applicable: root reads every file")
def test_a_file_the_user_cannot_read(tmp_path):
    f = tmp_path / "secret.yml"
    f.write_text("a: 1\n")
    f.chmod(0)
    with pytest.raises(ConfigProblems, match="permission denied"):
        read_yaml(f)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_no_bytes_whatsoever_raise_anything_else(tmp_path_factory, blob):
    f = tmp_path_factory.mktemp("fuzz") / "f.yml"
    f.write_bytes(blob)
    try:
        data, _ = read_yaml(f)
    except ConfigProblems as exc:
        assert exc.problems and all(p.startswith(str(f)) for p in exc.problems)
    else:
        assert isinstance(data, dict)
