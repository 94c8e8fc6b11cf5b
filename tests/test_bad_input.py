"""Every bad input of the foundation gets a clear error naming the thing, the value and
what is allowed, raised on the driver before training."""

from __future__ import annotations

import pytest
from pyspark.ml.linalg import Vectors, VectorUDT

from sparkae import Autoencoder


@pytest.fixture(scope="module")
def vec_df(spark):
    return spark.createDataFrame([(i, Vectors.dense([float(i), 1.0 + i % 3]), "a")
                                  for i in range(20)], ["id", "features", "name"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden=[]), r"'hidden': got \[\], expected a non-empty list of positive integers"),
    (dict(hidden=[10, 0]), r"'hidden': got \[10, 0\], expected a non-empty list of positive"),
    (dict(hidden=[-5]), r"'hidden': got \[-5\]"),
    (dict(activation="sigmoid"), r"'activation': got 'sigmoid', expected one of 'tanh', "
                                  r"'tanh_with_dropout', 'rectifier'"),
    (dict(epochs=0), r"'epochs': got 0, expected an integer >= 1"),
    (dict(epochs=-3), r"'epochs': got -3"),
    (dict(mini_batch_size=0), r"'mini_batch_size': got 0"),
    (dict(optimizer="rmsprop"), r"'optimizer': got 'rmsprop', expected one of 'adam', "
                                r"'adadelta', 'sgd'"),
    (dict(rate=0.0), r"'rate': got 0.0, expected a finite number > 0"),
    (dict(rho=1.5), r"'rho': got 1.5, expected a number in \(0, 1\)"),
    (dict(standardize="robust"), r"'standardize': got 'robust', expected one of 'h2o'"),
    (dict(l2=-1.0), r"'l2': got -1.0, expected a finite number >= 0"),
    (dict(epoch_memory=-1), r"'epoch_memory': got -1, expected an integer >= 0"),
    (dict(hidden=[4, 2, 4], deep_features_layer=5), r"'deep_features_layer': got 5, expected a "
                                                     r"hidden layer number from 1 to 3"),
])
def test_bad_params(vec_df, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Autoencoder(**kwargs).fit(vec_df)


def test_param_of_the_wrong_type_names_the_param():
    with pytest.raises(TypeError, match='param "hidden"'):
        Autoencoder(hidden="ten")
    with pytest.raises(TypeError, match="unexpected keyword argument 'hiden'; did you mean "
                                        "'hidden'"):
        Autoencoder(hiden=[10])


def test_missing_features_column(vec_df):
    with pytest.raises(ValueError, match=r"features_col: column 'pixels' not found; the DataFrame "
                                         r"has columns \['features', 'id', 'name'\]"):
        Autoencoder(features_col="pixels").fit(vec_df)
    with pytest.raises(ValueError, match=r"features_cols: column 'zz' not found"):
        Autoencoder(features_cols=["id", "zz"]).fit(vec_df)


def test_column_of_the_wrong_type(vec_df):
    with pytest.raises(ValueError, match=r"column 'name' has type string; expected a vector"):
        Autoencoder(features_col="name").fit(vec_df)
    with pytest.raises(ValueError, match=r"features_cols: column 'features' has type vector; "
                                         r"expected a numeric type .* or a string"):
        Autoencoder(features_cols=["id", "features"]).fit(vec_df)


def test_vectors_of_different_lengths(spark):
    df = spark.createDataFrame([(Vectors.dense([1.0, 2.0]),), (Vectors.dense([1.0, 2.0, 3.0]),)],
                               ["features"])
    with pytest.raises(ValueError, match=r"features_col 'features' holds vectors of different "
                                         r"lengths.*same number of features"):
        Autoencoder().fit(df)
    arrays = spark.createDataFrame([([1.0, 2.0],), ([1.0],)], ["features"])
    with pytest.raises(ValueError, match="different lengths"):
        Autoencoder().fit(arrays)


def test_empty_dataframe(vec_df):
    with pytest.raises(ValueError, match=r"the training DataFrame is empty: features_col "
                                         r"'features' has no rows"):
        Autoencoder().fit(vec_df.limit(0))


def test_empty_validation_dataframe(vec_df):
    with pytest.raises(ValueError, match=r"validation_df is empty"):
        Autoencoder(epochs=1).fit(vec_df, validation_df=vec_df.limit(0))


def test_validation_of_another_width(spark, vec_df):
    other = spark.createDataFrame([(Vectors.dense([1.0, 2.0, 3.0]),)], ["features"])
    with pytest.raises(ValueError, match=r"validation_df: vectors have 3 features; the training "
                                         r"data has 2"):
        Autoencoder(epochs=1).fit(vec_df, validation_df=other)


def test_null_and_nan_rows(spark):
    from pyspark.sql.types import StructField, StructType

    schema = StructType([StructField("features", VectorUDT(), True)])
    df = spark.createDataFrame([(Vectors.dense([1.0, 2.0]),), (None,)], schema)
    with pytest.raises(ValueError, match=r"features_col 'features' has 1 null rows; drop or fill them"):
        Autoencoder().fit(df)
    inf = spark.createDataFrame([(Vectors.dense([1.0, float("inf")]),),
                                 (Vectors.dense([1.0, 2.0]),), (Vectors.dense([2.0, 3.0]),)],
                                ["features"])
    with pytest.raises(ValueError, match=r"features_col 'features' contains infinite values in "
                                         r"feature index 1 \(1 rows\)"):
        Autoencoder().fit(inf)
    all_nan = spark.createDataFrame([(Vectors.dense([1.0, float("nan")]),),
                                     (Vectors.dense([2.0, float("nan")]),)], ["features"])
    with pytest.raises(ValueError, match=r"feature index 1 is NaN \(missing\) in every row"):
        Autoencoder().fit(all_nan)


def test_all_constant_features(spark):
    df = spark.createDataFrame([(Vectors.dense([1.0, 2.0]),)] * 5, ["features"])
    with pytest.raises(ValueError, match=r"every one of the 2 features is constant"):
        Autoencoder().fit(df)
