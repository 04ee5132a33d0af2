"""``auie demo`` against a real server: the adaptive arm beats the static baseline."""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers import AUIE, Server


@pytest.mark.slow
def test_demo_shows_the_adaptive_policy_beating_the_baseline(server: Server) -> None:
    result = subprocess.run(
        [
            AUIE,
            "demo",
            "--url",
            server.url,
            "--data-dir",
            str(server.data_dir),
            "--rounds",
            "2500",
            "--people",
            "200",
            "--seed",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(result.stdout)
    adaptive, holdout = report["arms"]["adaptive"], report["arms"]["holdout"]
    assert adaptive["rewarded"] + holdout["rewarded"] == 2500
    # A 30% holdout, give or take the hash's luck.
    assert 0.2 < holdout["rewarded"] / 2500 < 0.4
    # The holdout's expected click-through is about 0.17, the best possible about 0.35.
    assert adaptive["meanReward"] > holdout["meanReward"] + 0.04
    assert adaptive["ci95"][0] > holdout["meanReward"]
    assert report["history"]["adaptive"], "the learning curve has points"
    assert report["policyVersion"] is not None, "policies were snapshotted to the registry"
