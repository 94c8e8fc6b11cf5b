"""The anomaly panels of the reports: AnomalyDetectorModel.write_report (a real page with
the score distribution and the top features, naming a planted feature first for the rows
it makes anomalous) and the training job's report on features_cols input (the new
captions, features named by column). Tiny fits: few rows, few epochs, two members."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest

from sparkae.anomaly.report import PIXEL_FIGURE, SCORE_FIGURE, TOP_FIGURE

COLS = [f"c{j}" for j in range(6)]
PLANTED = list(range(0, 300, 50))      # rows whose feature c3 is pushed far out


@pytest.fixture(scope="module")
def planted(spark):
    """300 rows of 6 correlated features; in the 6 rows of ``PLANTED`` feature c3 alone
    lies 20 standard deviations out (the rest of those rows is ordinary)."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(300, 2)) @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(300, 6))
    x[PLANTED, 3] += 20 * x[:, 3].std()
    rows = [(i, *map(float, r)) for i, r in enumerate(x)]
    df = spark.createDataFrame(rows, ["id"] + COLS).repartition(2).cache()
    df.count()
    yield df
    df.unpersist()


@pytest.fixture(scope="module")
def detector(planted):
    from sparkae import AnomalyDetector

    return AnomalyDetector(features_cols=COLS, contamination=0.05, n_estimators=2,
                           epoch_num=2, min_steps=60, seed=3).fit(planted)


class _Page(HTMLParser):
    """Every tag opened and closed, the images' alt and src, every external reference."""

    def __init__(self) -> None:
        super().__init__()
        self.stack, self.images, self.external, self.cells = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("meta", "img", "br"):
            self.stack.append(tag)
        if tag == "img":
            self.images.append((a.get("alt"), a.get("src", "")))
        for key in ("src", "href"):
            if key in a and not a[key].startswith("data:"):
                self.external.append(a[key])

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] in ("th", "td"):
            self.cells.append(data)


def _parse(text: str) -> _Page:
    assert text.startswith("<!DOCTYPE html>")
    page = _Page()
    page.feed(text)
    page.close()
    assert page.stack == [] and page.external == []
    return page


def test_the_planted_feature_is_named_first_for_the_rows_it_makes_anomalous(planted, detector):
    from sparkae.anomaly.report import detector_feature_names, ranked_top_features

    assert detector_feature_names(detector) == COLS
    top = ranked_top_features(detector, planted, top_rows=10, k=3, id_col="id")
    assert len(top) == 10 and all(len(t["features"]) == 3 for t in top)
    scores = [t["anomaly_score"] for t in top]
    assert scores == sorted(scores, reverse=True)
    assert set(PLANTED) <= {t["row"] for t in top}
    for t in top:
        (first, e1), (_, e2), (_, e3) = t["features"]
        assert e1 >= e2 >= e3
        if t["row"] in PLANTED:
            assert first == "c3" and e1 > 5 * e2, t
    by_rank = ranked_top_features(detector, planted, top_rows=2, k=1)
    assert [t["row"] for t in by_rank] == [1, 2]
    assert [t["anomaly_score"] for t in by_rank] == pytest.approx(scores[:2])


def test_write_report_is_a_self_contained_page_with_both_figures(planted, detector, tmp_path):
    out = tmp_path / "reports" / "anomaly.html"
    got = detector.write_report(planted, "file://" + str(out), top_rows=6, id_col="id")
    assert got == "file://" + str(out)
    page = _parse(out.read_text())
    assert [alt for alt, _ in page.images] == [SCORE_FIGURE, TOP_FIGURE]
    for _, src in page.images:
        assert src.startswith("data:image/png;base64,") and len(src) > 5000
    cells = dict(zip(page.cells[0::2], page.cells[1::2]))
    assert cells["rows"] == "300" and cells["rows scored for this report"] == "300"
    assert cells["contamination"] == "0.05" and cells["members"] == "2"
    assert float(cells["threshold"]) == pytest.approx(detector.threshold, rel=1e-5)
    flagged = float(cells["share flagged (scored rows)"].rstrip("%")) / 100
    assert abs(flagged - 0.05) <= 0.03
    assert not list(out.parent.glob("*.tmp-*"))


def test_write_report_samples_and_checks_its_arguments(planted, detector, tmp_path):
    from sparkae.anomaly.report import write_report

    path = write_report(detector, planted, str(tmp_path / "s.html"), top_rows=3,
                        sample_rows=100)
    cells = _parse(open(path).read()).cells
    scored = int(dict(zip(cells[0::2], cells[1::2]))["rows scored for this report"])
    assert 50 <= scored <= 160           # a seeded sample of about 100 of the 300 rows
    with pytest.raises(ValueError, match=r"top_rows: got 0, expected an integer >= 1"):
        detector.write_report(planted, str(tmp_path / "x.html"), top_rows=0)
    with pytest.raises(ValueError, match=r"sample_rows: got 1.5, expected an integer >= 1"):
        detector.write_report(planted, str(tmp_path / "x.html"), sample_rows=1.5)
    with pytest.raises(ValueError, match=r"id_col: column 'key' not found; the DataFrame "
                                         r"has id, c0"):
        detector.write_report(planted, str(tmp_path / "x.html"), id_col="key")
    with pytest.raises(ValueError, match="df: the DataFrame has no rows"):
        detector.write_report(planted.limit(0), str(tmp_path / "x.html"))
    assert not (tmp_path / "x.html").exists()


def test_write_report_of_image_rows_names_pixels_and_maps_their_errors(spark, tmp_path):
    from pyspark.ml.linalg import Vectors

    from sparkae import AnomalyDetector
    from sparkae.anomaly.report import ranked_top_features

    rng = np.random.default_rng(4)
    x = np.zeros((120, 16))
    x[:, :8] = rng.random((120, 1)) + 0.05 * rng.random((120, 8))   # top half: one level
    x[7, 13] = 5.0                                                   # one bright pixel
    df = spark.createDataFrame([(i, Vectors.dense(r)) for i, r in enumerate(x)],
                               ["id", "features"])
    model = AnomalyDetector(n_estimators=1, epoch_num=2, min_steps=60, seed=1).fit(df)
    top = ranked_top_features(model, df, top_rows=1, k=2, id_col="id", image_shape=[4, 4])
    assert top[0]["row"] == 7 and top[0]["features"][0][0] == "(3, 1)"
    path = model.write_report(df, str(tmp_path / "img.html"), top_rows=4,
                              image_shape=[4, 4], id_col="id")
    page = _parse(open(path).read())
    assert [alt for alt, _ in page.images] == [SCORE_FIGURE, TOP_FIGURE, PIXEL_FIGURE]
    from sparkae.anomaly.report import detector_feature_names

    assert detector_feature_names(model, [4, 4])[13] == "(3, 1)"


def test_training_report_names_columns_in_its_top_features_panel(spark, small_dense,
                                                                 tmp_path):
    from sparkae import Autoencoder
    from sparkae.jobs import train_settings
    from sparkae.jobs.train_job import write_report

    _, df = small_dense
    cols = [f"c{j}" for j in range(12)]
    settings = train_settings.defaults()
    settings["model"].update(features_cols=cols, hidden=[3], epochs=1, seed=1,
                             anomaly_quantile=0.9)
    settings["input"].update(id_col="id", label_col=None)
    model = Autoencoder(**settings["model"]).fit(df)
    scored = model.transform(df).select("id", "reconstruction_mse")
    path = write_report(model, df, scored, settings, str(tmp_path / "report.html"))
    page = _parse(open(path).read())
    alts = [alt for alt, _ in page.images]
    # features_cols: no rows-as-lines panels, but the top features and the distribution
    assert alts == ["Training curve", "Top features of the most anomalous rows",
                    "Reconstruction error distribution", "Coding layer average activations"]
    from sparkae import report

    keep = model.network().scaler.keep.numpy()
    assert report.feature_names(model.input_info, keep) == cols
    assert re.search(r"<th>threshold</th><td>[0-9.e-]+</td>", open(path).read())
