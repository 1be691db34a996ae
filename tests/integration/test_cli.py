"""The command line as a user meets it: `seismo up`, `seismo serve`, `seismo demo`."""

import os
import re
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from helpers import REPO, free_port

pytestmark = pytest.mark.integration


def seismo(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "seismo", *args], cwd=REPO, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def port_env():
    return {f"SEISMO_{name}_PORT": str(free_port()) for name in ("MODEL", "BROKER", "LOGGER", "OUTLIER", "DRIFT", "METRICS", "TABULAR", "EXPLAINER")}


def test_a_port_in_use_is_a_clear_error_naming_it(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**port_env(), "SEISMO_BROKER_PORT": str(port)}
        out, err = seismo("up", "--data-dir", str(tmp_path), env=env).communicate(timeout=60)
        assert f"port {port} on 127.0.0.1 is already in use; cannot start the broker service" in err
        result = subprocess.run([sys.executable, "-m", "seismo", "serve", "logger", "--port", str(port)], cwd=REPO,
                                capture_output=True, text=True, timeout=60, env={**os.environ, "SEISMO_DATA_DIR": str(tmp_path)})
        assert result.returncode == 2 and f"port {port}" in result.stderr and "logger" in result.stderr


def test_bad_configuration_is_reported_not_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "seismo", "serve", "model", "--port", str(free_port())], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "SEISMO_MODEL_LOG_MODE": "sometimes"})
    assert result.returncode == 2 and "log_mode must be all, request or response" in result.stderr


@pytest.mark.slow  # starts every service of the stack as a user would (TensorFlow in three of them): about 35 s
def test_up_prints_the_table_serves_and_stops_cleanly_on_ctrl_c(tmp_path):
    env = port_env()
    process = seismo("up", "--data-dir", str(tmp_path), env=env, start_new_session=True)
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        for name in ("model", "broker", "logger", "outlier", "drift", "metrics", "tabular", "explainer"):
            url = f"http://127.0.0.1:{env[f'SEISMO_{name.upper()}_PORT']}"
            assert url in output and f"{url}/metrics" in output
            assert httpx.get(f"{url}/readyz").status_code == 200
        assert (tmp_path / "broker.db").exists() and (tmp_path / "records.db").exists()
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0 and "stopped." in rest
        for port in env.values():  # every child is gone: its port is free again
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", int(port)))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.slow  # the whole demo (eight services, the cascade, two explanations): about a minute
def test_demo_runs_end_to_end_and_exits_0(tmp_path, example_model):
    env = port_env()
    result = subprocess.run([sys.executable, "-m", "seismo", "demo", "--predictions", "40", "--no-detection", "--data-dir", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "demo finished: every prediction was logged, every feedback joined, both explanations made." in result.stdout
    assert "complete records (request + response): 41 of 41" in result.stdout
    assert "phase 2: about 40 % right" in result.stdout
    assert "explanation-image.png" in result.stdout and (tmp_path / "demo" / "explanation-image.png").exists()
    assert "wine sample (predicted class" in result.stdout and "KernelSHAP" in result.stdout
    assert "feedback: 80 received, 80 joined by prediction id, 0 still pending, 0 orphaned" in result.stdout
    assert "org.kubeflow.serving.inference.request" in result.stdout and "/metrics" in result.stdout
    # the cascade: scan-gain's upgrade improved it on its own terms, the classifier fell, the diagnosis names the upgrade
    assert "/v1/diagnosis?model=image-classifier&since=" in result.stdout and ": upstream_cascade (confidence" in result.stdout
    assert "culprit: scan-gain version 1 -> 2 at " in result.stdout and "on its own terms it improved" in result.stdout
    # Seismo's before/after figures for scan-gain are the demo's own (v1's rows all before the upgrade, v2's all after)
    own = [float(x) / 100 for x in re.findall(r"scan-gain v\d: \d+ scans; its own relative error ([\d.]+)%", result.stdout)]
    seismo_own = re.search(r"culprit: .*its own relative_mae ([\d.]+) -> ([\d.]+)", result.stdout)
    assert len(own) == 2 and seismo_own, result.stdout[-2000:]
    assert abs(float(seismo_own[1]) - own[0]) < 0.01 and abs(float(seismo_own[2]) - own[1]) < 0.01, (own, seismo_own[0])
    for port in env.values():  # it stopped what it started
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", int(port)))
