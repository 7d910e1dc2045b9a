"""Bad input through the CLI: one clear line, the right exit code (2 usage, 1 runtime), never a traceback.

The cases live in benchmarks/bad_inputs.py, which also writes them as a table.
"""

import importlib.util
import warnings
from pathlib import Path

import pytest

from kinema.cli import main

_spec = importlib.util.spec_from_file_location(
    "bad_inputs", Path(__file__).resolve().parent.parent / "benchmarks" / "bad_inputs.py")
bad_inputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bad_inputs)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return bad_inputs.build_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("what, argv, code, text", bad_inputs.CASES, ids=[c[0] for c in bad_inputs.CASES])
def test_bad_input_gets_one_line_and_its_exit_code(paths, capsys, what, argv, code, text):
    owned = bad_inputs.user_files(paths["root"])
    with warnings.catch_warnings(record=True) as caught:  # pytest records warnings instead of printing them
        warnings.simplefilter("always")
        try:
            got = main(bad_inputs.fill(argv, paths))
        except SystemExit as exit_:  # argparse's own usage errors
            got = exit_.code
    err = capsys.readouterr().err
    assert got == code, err
    assert bad_inputs.user_files(paths["root"]) == owned  # nothing of the user's lost or changed
    assert not bad_inputs.leftovers(paths["root"])  # nothing half-written left behind
    if code == 0:  # the input is usable: a warning says what was changed
        assert any(text in str(w.message) for w in caught), [str(w.message) for w in caught]
    else:
        assert text in err
        assert [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith(("kinema", "usage"))], err
    assert "Traceback" not in err
    assert not list(paths["root"].glob("PWNED*"))  # no payload ran


@pytest.mark.parametrize("argv, code", [
    (["train", "--out", "{root}/r", "--set", "model.chanels=8"], 2),
    (["sample", "--out", "{root}/o", "--model", "{evil}", "--trust-pickle"], 2),
    (["train", "--config", "{root}/tiny.yaml", "--out", "{root}/d", "--steps", "20", "--set", "train.lr=1e6",
      "--set", "train.grad_clip=0", "--set", "train.warmup_steps=1", "--set", "train.max_bad_steps=2"], 1),
])
def test_a_real_process_prints_no_traceback(paths, argv, code):
    got, err = bad_inputs.run_case(bad_inputs.fill(argv, paths))
    assert got == code, err
    assert "Traceback" not in err and "error:" in err
