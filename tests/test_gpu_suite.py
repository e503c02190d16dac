"""benchmarks/gpu_suite.py --dry-run: every code path of the GPU suite on the CPU with tiny models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO


@pytest.mark.slow
def test_gpu_suite_dry_run_reports_every_figure(tmp_path):
    out = tmp_path / "suite.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--dry-run", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert [r["model"] for r in results] == ["metis", "wav2vec2-large", "whisper", "eres2netv2"]
    for r in results:
        assert r["gflop_per_file"] > 0 and r["params_m"] > 0, r["model"]
        for dtype in ("float32", "bfloat16"):
            run = r[dtype]
            assert run["files"] == 3 and run["files_per_s"] > 0 and run["x_realtime"] > 0, (r["model"], dtype)
            assert run["tflops_wall"] > 0
        assert 0.9 < r["bf16_vs_fp32"]["cosine_median"] <= 1.0 + 1e-9
        assert r["seed_files_per_s"] > 0 and r["ratio_vs_seed"] > 0
    assert "Traceback" not in proc.stderr
    assert "done in" in proc.stdout
