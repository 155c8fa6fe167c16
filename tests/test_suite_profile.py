"""benchmarks/suite_profile.py's summary of a profile (the plugin itself runs with
``pytest -p benchmarks.suite_profile``)."""

import json

from benchmarks import suite_profile


def test_summary_adds_subprocess_cpu_and_ranks_tests(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(suite_profile, "OUT", tmp_path)
    assert suite_profile.main() == 2
    assert "no profile in" in capsys.readouterr().out
    rows = [
        {"test": "a", "cpu": 1.0, "children_cpu": 11.0, "wall": 5, "compiles": 0, "compile_cpu": 0},
        {"test": "b", "cpu": 4.0, "children_cpu": 0.0, "wall": 4, "compiles": 3, "compile_cpu": 2},
    ]
    for pid, row in zip((1, 2), rows):
        (tmp_path / f"{pid}.jsonl").write_text(json.dumps(row) + "\n")
    assert suite_profile.main() == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == "2 tests: 16 s of CPU (11 s in subprocesses), 3 in-process XLA compiles taking 2 s of it"
    )
    assert "10 s or more of CPU: 1, 12 s" in out[1] and "3-10 s of CPU: 1, 4 s" in out[2]
    assert out[-2].split() == ["12.0", "0.0", "a"] and out[-1].split() == ["4.0", "2.0", "b"]
