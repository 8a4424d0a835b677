"""The boot estimate from files a test writes: what it is made of, and where each term came from."""

import json

import pytest

from harness.plan.boot import DEFAULT_IMAGE_MB, DEFAULT_START, inputs

pytestmark = [pytest.mark.harness, pytest.mark.unit]


def test_estimate_is_pull_plus_start_scaled_by_the_cpu_share(tmp_path):
    timings, images = tmp_path / "timings.json", tmp_path / "images.json"
    timings.write_text(
        json.dumps(
            {
                "docker": {"mlflow": {"ready_s": 12.0, "max_s": 14.0, "samples": [12.0, 14.0]}},
                "rehearsal": {"mlflow": {"ready_s": 22.0, "max_s": 22.0, "samples": [22.0]}},
                "local": {"mlflow": {"ready_s": 8.0, "max_s": 9.0, "samples": [8.0, 9.0]}},
            }
        )
    )
    images.write_text(json.dumps({"tags": {"mlflow": "mlplatform-mlflow:abc"}, "size_mb": {"mlflow": 1200.0}}))
    boot = inputs(timings, images, pull_mb_s=40, cores=4)
    e = boot.estimate("mlflow", 1024)  # 1 vCPU against 4 cores here
    assert (e.pull_s, e.start_s, e.cpu_factor, e.total) == (30.0, 9.0, 4.0, 66.0)  # local measures the app
    assert "local max of 2" in e.terms() and "built mlplatform-mlflow:abc" in e.terms()
    assert boot.estimate("mlflow", 4096).cpu_factor == 1.0  # a task with more vCPUs than cores here: no speed-up
    api = boot.estimate("api", 512)
    assert api.start_s == DEFAULT_START["api"] and api.image_mb == DEFAULT_IMAGE_MB["api"]
    assert "nothing measured" in api.terms() and "no image built here" in api.terms()


def test_missing_or_broken_files_fall_back_to_the_documented_figures(tmp_path):
    broken = tmp_path / "timings.json"
    broken.write_text("{not json")
    boot = inputs(broken, tmp_path / "absent.json", fargate_factor=2.0, cores=2)
    e = boot.estimate("mlflow", 1024)
    assert e.total == round(DEFAULT_IMAGE_MB["mlflow"] / 40, 1) + DEFAULT_START["mlflow"] * 2 * 2.0
    assert "fargate factor 2" in e.terms()
