"""`explore --compare B` checks model B before the screen opens, as it checks `--model`."""

from __future__ import annotations


def test_explore_refuses_a_missing_model_b_before_the_screen_opens(cli, model_dirs, cache_dir):
    res = cli("explore", "-m", str(model_dirs["gpt2"]), "--compare", "./missing-model-b")
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert err[-1].startswith("tokentui: error:") and "no such folder" in err[-1] and "missing-model-b" in err[-1]
    assert "Traceback" not in res.output
