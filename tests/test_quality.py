"""`soundstorm eval` at toy size: four systems (five where the decoder renders the posterior), the paper's
measures, a CSV per utterance."""

from __future__ import annotations

import csv
import json

import pytest

from soundstorm.base.errors import InputError
from soundstorm.measures.quality import read_test_set


@pytest.mark.slow
def test_eval_four_rows_and_csv(cli, tiny_bundle, tmp_path):
    out = tmp_path / "rows.csv"
    code, stdout, stderr = cli("eval", "--checkpoint", tiny_bundle, "--json", "--csv", out, "--device", "cpu")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["utterances"] == 2 and report["ar_weights"] == "random-init"
    assert list(report["summary"]) == ["original", "codec", "soundstorm", "ar_baseline"]
    for measures in report["summary"].values():
        assert 0 <= measures["cer"] and -1 <= measures["similarity"] <= 1
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * 4 and {r["system"] for r in rows} == set(report["summary"])


@pytest.mark.slow
@pytest.mark.parametrize("voice", [False, True], ids=["posterior", "posterior-and-voice"])
def test_eval_adds_the_posterior_row_where_the_decoder_renders_it(cli, tmp_path, voice):
    """A decoder that reads voice vectors renders what is generated with the prompt's."""
    from conftest import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path, posterior_codec=True, voice_codec=voice)
    code, stdout, stderr = cli("eval", "--checkpoint", bundle, "--json", "--device", "cpu", "--limit", "1")
    assert code == 0, stderr
    summary = json.loads(stdout)["summary"]
    assert list(summary) == ["original", "codec", "soundstorm", "ar_baseline", "soundstorm_posterior"]
    assert (
        0 <= summary["soundstorm_posterior"]["cer"]
        and -1 <= summary["soundstorm_posterior"]["similarity"] <= 1
    )


def test_test_set_needs_pairs(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    with pytest.raises(InputError, match="no NAME.wav with a NAME.txt"):
        read_test_set(tmp_path)
