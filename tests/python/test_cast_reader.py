"""Stock asciinema 2.4 (`asciinema cat`) reads every kind of recording gatehouse writes.

The casts come from the Rust integration test `cast_fixtures` (tests/record_audit.rs), which
writes them through the recorder's public API into GATEHOUSE_CAST_OUT together with the exact
bytes a player must print for each.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def casts(tmp_path_factory):
    out = tmp_path_factory.mktemp("casts")
    subprocess.run(
        ["cargo", "test", "--quiet", "--test", "record_audit", "--", "--exact", "cast_fixtures"],
        cwd=REPO,
        env={**os.environ, "GATEHOUSE_CAST_OUT": str(out)},
        check=True,
    )
    return json.loads((out / "manifest.json").read_text())


def asciinema_cat(path):
    return subprocess.run(
        [sys.executable, "-m", "asciinema", "cat", str(path)],
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
    ).stdout


CASES = ["exec", "refused", "huge", "binary", "utf8-split", "utf8-bytewise"]


@pytest.mark.parametrize("name", CASES)
def test_asciinema_cat_prints_the_recorded_output(casts, name):
    case = next(c for c in casts if c["name"] == name)
    expected = Path(case["expected"]).read_bytes()
    assert asciinema_cat(case["cast"]) == expected


@pytest.mark.parametrize("name", CASES)
def test_every_line_is_json_and_there_are_no_blank_lines(casts, name):
    case = next(c for c in casts if c["name"] == name)
    raw = Path(case["cast"]).read_bytes()
    text = raw.decode("utf-8")  # strict: every byte is valid UTF-8
    assert text.endswith("\n")
    lines = text.split("\n")[:-1]
    header = json.loads(lines[0])
    assert header["version"] == 2
    assert header["gatehouse"]["identity"] == "ci-agent"
    events = [json.loads(line) for line in lines[1:]]
    assert all(line.strip() for line in lines)
    assert events[-1][1] == "x"
    assert [e[0] for e in events] == sorted(e[0] for e in events)
