"""MLflow "models from code" wrapper of the sensor forecaster: no pickle, the state lives in JSON/parquet.

Input: a frame with `sensor_id` and `horizon` (steps) per row; output: the forecasts (timestamp, yhat,
80%/95% bounds, model) of every row, tagged with its sensor_id.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from ml.sensors.forecast import SensorForecaster


class SensorForecastModel(PythonModel):
    def load_context(self, context):
        self.forecaster = SensorForecaster.load(context.artifacts["forecaster"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frames = [
            self.forecaster.forecast(str(row.sensor_id), int(row.horizon)).assign(
                sensor_id=str(row.sensor_id)
            )
            for row in model_input.itertuples(index=False)
        ]
        return pd.concat(frames, ignore_index=True)


mlflow.models.set_model(SensorForecastModel())
