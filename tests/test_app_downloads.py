"""CSV downloads (app/downloads.py): the numbers a table shows, without float32 noise."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest
from test_app_support import TIMEOUT

from app.downloads import csv_text


def test_float32_metrics_are_written_as_their_shortest_digits():
    """The store's float32 accuracies became 0.7860000133514404 in a CSV."""
    stored = np.array([0.786, 0.8453, 0.1, 1.0, np.nan], dtype=np.float32).astype(np.float64)
    frame = pd.DataFrame({"id": [1, 2, 3, 4, 5], "setting": ["dm", "cce", "gce", "mae", "mse"],
                          "test acc": stored, "iterations": [2000.0, 2000.0, 1e3, 50.0, np.nan]})
    text = csv_text(frame)
    assert text.splitlines() == ["id,setting,test acc,iterations", "1,dm,0.786,2000",
                                 "2,cce,0.8453,2000", "3,gce,0.1,1000", "4,mae,1,50", "5,mse,,"]
    back = pd.read_csv(io.StringIO(text))
    # Read back, each value is the float32 the store holds.
    np.testing.assert_array_equal(back["test acc"].to_numpy(dtype=np.float32),
                                  stored.astype(np.float32))


def test_mixed_columns_and_the_index_are_rounded_too():
    noisy = float(np.float32(0.3))  # 0.30000001192092896
    frame = pd.DataFrame({"mean": [noisy, "—"], "std": [noisy / 3, None]},
                         index=pd.Index([float(np.float32(0.4)), 0.2], name="noise rate"))
    lines = csv_text(frame, index=True).splitlines()
    assert lines == ["noise rate,mean,std", "0.4,0.3,0.1", "0.2,—,"]


def _page() -> None:
    import pandas as pd

    from app.downloads import csv_download

    csv_download(pd.DataFrame({"acc": [0.7860000133514404]}), "dm-seeds", "t.csv")


def test_the_download_button_offers_the_rounded_table(monkeypatch):
    """What the button serves: the media store is handed the rounded CSV, under its name."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    served: list[tuple[bytes, str | None]] = []
    load = MemoryMediaFileStorage.load_and_get_id

    def recording(self, data, mimetype, kind, filename=None):
        served.append((data, filename))
        return load(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    at = AppTest.from_function(_page, default_timeout=TIMEOUT).run()
    assert not at.exception
    [button] = at.get("download_button")
    assert button.proto.label == "Download table (CSV)"
    assert served == [(b"acc\n0.786\n", "dm-seeds.csv")]
