"""`python -m analytics load`: counts by reason on success, one line and a non-zero exit on failure."""

import subprocess
import sys
from pathlib import Path

from analytics.store import init_schema, make_engine
from tests.analytics import store_rows

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "analytics", *args], cwd=ROOT, capture_output=True, text=True)


def test_load_reports_loaded_and_rejected(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    engine = make_engine(url, create_dir=True)
    init_schema(engine)
    store_rows.fill(engine)
    csv = tmp_path / "branches.csv"
    csv.write_text("branch_id,name,city,province,opened_on\n"
                   "BR010,杭州西湖支行,杭州市,浙江省,2019-01-01\n"
                   "BR011,坏日期支行,杭州市,浙江省,2019-13-45\n", encoding="gb18030")
    out = _cli("load", str(csv), "--table", "branches", "--db", url)
    assert out.returncode == 0, out.stderr
    assert "1" in out.stdout and "rejected" in out.stdout
    again = _cli("load", str(csv), "--table", "branches", "--db", url)
    assert again.returncode == 0 and "already loaded" in again.stdout


def test_unreadable_file_is_one_line_and_non_zero(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    bad = tmp_path / "customers.csv"
    bad.write_bytes(b"\x00\xff\xfe garbage \x00")
    out = _cli("load", str(bad), "--table", "customers", "--db", url)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ")


def _branch_store(tmp_path) -> str:
    url = f"sqlite:///{tmp_path}/s.db"
    engine = make_engine(url, create_dir=True)
    init_schema(engine)
    store_rows.fill(engine)
    engine.dispose()
    return url


def test_load_encoding_names_the_encoding_of_a_shift_jis_file(tmp_path):
    url = _branch_store(tmp_path)
    sjis = tmp_path / "branches-sjis.csv"
    sjis.write_bytes("branch_id,name,city,province,opened_on\nBR201,新宿支店,東京都,東京都,2019-01-01\n"
                     "BR202,梅田支店,大阪市,大阪府,2020-02-02\n".encode("shift_jis"))
    refused = _cli("load", str(sjis), "--table", "branches", "--db", url)
    assert refused.returncode == 1 and "--encoding" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    out = _cli("load", str(sjis), "--table", "branches", "--encoding", "shift_jis", "--db", url)
    assert out.returncode == 0, out.stderr
    assert "csv (shift_jis)" in out.stdout and "2 loaded" in out.stdout


def test_load_dev_null_says_what_it_is(tmp_path):
    url = _branch_store(tmp_path)
    out = _cli("load", "/dev/null", "--table", "branches", "--db", url)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == ("error: /dev/null: a character device, not a regular file; nothing was loaded. "
                                  "Hint: give a CSV or Parquet file (save a stream to a file first).")
