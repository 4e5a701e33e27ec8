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
