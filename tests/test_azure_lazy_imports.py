"""A local run never imports the Azure SDKs; the Azure helpers import them only when used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from pathlib import Path
import pyarrow as pa, pyarrow.parquet as pq
import ingest_core.azure.auth, ingest_core.azure.settings, ingest_core.azure.urls
import ingest_core.ledger.azure_table, ingest_core.sources.azure_blob
from ingest_core import IdempotentIngestor
root = Path(sys.argv[1])
(root / "landing").mkdir()
pq.write_table(pa.table({"id": [1, 2]}), root / "landing" / "a.parquet")
with IdempotentIngestor(table=str(root / "lake" / "t")) as ing:
    assert ing.ingest_directory(str(root / "landing")).ingested == 1
print(sorted(m for m in sys.modules if m == "azure" or m.startswith("azure.")))
"""


def test_a_local_run_imports_no_azure_sdk(tmp_path: Path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
