"""`seismo fit` from the command line: formats, methods, progress, errors."""

import numpy as np
import pytest
from helpers import run_cli

from seismo.detect import load_detector


def fit(*args):
    return run_cli("fit", *args)


def test_fit_from_npy_csv_and_parquet(tmp_path):
    data = np.random.default_rng(0).normal(size=(300, 3))
    np.save(tmp_path / "ref.npy", data)
    np.savetxt(tmp_path / "ref.csv", data, delimiter=",", header="a,b,c", comments="")
    result = fit("drift", "--reference", str(tmp_path / "ref.npy"), "--out", str(tmp_path / "ks"))
    assert result.returncode == 0, result.stderr
    assert "[1/3] reading" in result.stderr and "[3/3] saving" in result.stderr and "300 instances" in result.stderr
    assert load_detector(tmp_path / "ks").kind == "KSDrift"
    result = fit("outlier", "--reference", str(tmp_path / "ref.csv"), "--out", str(tmp_path / "maha"), "--method", "mahalanobis", "--preprocess", "pca:2")
    assert result.returncode == 0, result.stderr
    assert load_detector(tmp_path / "maha").preprocess.n_components == 2
    assert "split-conformal from 60 rows (held out of the reference)" in result.stderr and "false positives measured on 30 more" in result.stderr
    np.save(tmp_path / "calibration.npy", data[:90] + 0.01)
    result = fit("outlier", "--reference", str(tmp_path / "ref.npy"), "--calibration", str(tmp_path / "calibration.npy"),
                 "--out", str(tmp_path / "given"))
    assert result.returncode == 0 and "split-conformal from 60 rows (calibration set)" in result.stderr, result.stderr
    assert load_detector(tmp_path / "given").calibration["source"] == "calibration set"
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"a": data[:, 0], "b": data[:, 1], "c": data[:, 2]}), tmp_path / "ref.parquet")
    result = fit("drift", "--reference", str(tmp_path / "ref.parquet"), "--out", str(tmp_path / "mmd"), "--method", "mmd")
    assert result.returncode == 0, result.stderr
    assert load_detector(tmp_path / "mmd").kind == "MMDDrift"


@pytest.mark.parametrize("args, message", [
    (["drift", "--reference", "nope.npy", "--out", "x"], "not found"),
    (["drift", "--reference", "REF", "--out", "x", "--method", "magic"], "unknown drift method 'magic'"),
    (["drift", "--reference", "REF", "--out", "x", "--preprocess", "fft"], "unknown preprocessing 'fft'"),
    (["outlier", "--reference", "BAD", "--out", "x"], "NaN"),
    (["outlier", "--reference", "REF", "--calibration", "BAD", "--out", "x"], "NaN"),
    (["drift", "--reference", "REF", "--calibration", "REF", "--out", "x"], "--calibration sets an outlier detector's threshold"),
    (["outlier", "--reference", "REF", "--calibration-fraction", "1", "--out", "x"], "calibration_fraction must be in [0, 1)"),
])
def test_fit_errors_are_one_clear_line(tmp_path, args, message):
    np.save(tmp_path / "ref.npy", np.zeros((10, 2)))
    np.save(tmp_path / "bad.npy", np.full((10, 2), np.nan))
    args = [str(tmp_path / "ref.npy") if a == "REF" else str(tmp_path / "bad.npy") if a == "BAD" else a for a in args]
    result = fit(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_tools_name_the_store_without_a_services_settings(monkeypatch, tmp_path):
    """`--store` takes a SQLite file or an Elasticsearch URL; the tools read the store's settings only."""
    from seismo.store.settings import RecordStoreSettings

    monkeypatch.setenv("SEISMO_LOGGER_ELASTICSEARCH_URL", "https://from-env:9200")
    monkeypatch.setenv("SEISMO_LOGGER_MAX_READ_BYTES", "not a logger setting the tools read")
    assert RecordStoreSettings.named("http://es:9200").elasticsearch_url == "http://es:9200"
    named_file = RecordStoreSettings.named(str(tmp_path / "records.db"))
    assert named_file.sqlite_path == tmp_path / "records.db" and named_file.elasticsearch_url is None  # an explicit file wins
    assert RecordStoreSettings.named().elasticsearch_url == "https://from-env:9200"  # else the logger's, from the environment
    with pytest.raises(FileNotFoundError, match="records.db"):
        named_file.open_existing_store()
