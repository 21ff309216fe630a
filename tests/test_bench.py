"""`soundstorm bench` at toy size: both generators timed on the same input, the report's shape."""

from __future__ import annotations

import json

import pytest


def test_bench_json_at_toy_size(cli, tiny_bundle, tmp_path):
    code, stdout, stderr = cli(
        "bench",
        "--durations",
        "0.5,1",
        "--runs",
        "1",
        "--checkpoint",
        tiny_bundle,
        "--json",
        "--device",
        "cpu",
        "--precision",
        "bf16",
    )
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["device"] == "cpu" and report["dtype"] == "bf16"
    assert report["ar_weights"].startswith("random-init")  # the tiny bundle has none: said so
    assert "no trained AR baseline" in stderr
    assert [r["duration_s"] for r in report["results"]] == [0.5, 1.0]
    for row in report["results"]:
        frames = round(row["duration_s"] * 50)
        assert row["ar_steps"] == frames * 2  # T x Q tokens, one pass each
        assert row["soundstorm_passes"] == 16 + 1
        assert row["ratio"] == pytest.approx(row["ar_s"] / row["soundstorm_s"], rel=0.02)
        assert row["t2s_s"] > 0 and row["decode_s"] >= 0
        assert row["posterior_s"] is None  # this bundle's decoder renders codes only


@pytest.mark.slow
def test_bench_times_the_posterior_pass_where_the_decoder_renders_it(cli, tmp_path):
    from conftest import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path, posterior_codec=True)
    code, stdout, stderr = cli("bench", "--durations", "0.5", "--runs", "1", "--checkpoint", bundle, "--json")
    assert code == 0, stderr
    (row,) = json.loads(stdout)["results"]
    assert row["posterior_s"] > 0 and row["soundstorm_passes"] == 16 + 1
    code, stdout, stderr = cli("bench", "--durations", "0.5", "--runs", "1", "--checkpoint", bundle)
    assert code == 0 and "poste" in stdout, stderr  # the column (a narrow terminal cuts its title)


def test_bench_table_and_plot(cli, tiny_bundle, tmp_path):
    plot = tmp_path / "bench.png"
    code, stdout, stderr = cli(
        "bench", "--durations", "0.4", "--runs", "1", "--checkpoint", tiny_bundle, "--fp32", "--plot", plot
    )
    assert code == 0, stderr
    assert "SoundStorm vs AR baseline: cpu, fp32" in stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
