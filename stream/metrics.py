"""The worker's Prometheus metrics (prefix mobstream_; no uid or cell labels) and their endpoint."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

PINGS = Counter("mobstream_pings_total", "Pings read from the pings topic, by outcome (accepted, late, dead).",
                ["outcome"])
DEAD_LETTERS = Counter("mobstream_dead_letters_total", "Messages or pings sent to the dead-letter topic, by reason.",
                       ["reason"])
LATE = Counter("mobstream_late_pings_total", "Pings for a slot the watermark had already closed.")
MESSAGES = Counter("mobstream_messages_total", "Kafka messages read from the pings topic.")
BATCH_SECONDS = Histogram("mobstream_batch_processing_seconds",
                          "Wall time to decode, classify and store one partition's batch of messages.",
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
INGEST_LAG_SECONDS = Histogram("mobstream_ingest_latency_seconds",
                               "From a message's Kafka timestamp to its pings being in Redis.",
                               buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
SLOT_CLOSE_SECONDS = Histogram("mobstream_slot_close_seconds",
                               "Wall time to close the slots one batch's watermark moved past (windows, flows, assembly).",
                               buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SLOTS_CLOSED = Counter("mobstream_slots_closed_total", "Slots closed by this worker's partitions (per partition).")
SLOTS_ASSEMBLED = Counter("mobstream_slots_assembled_total", "City slots whose flows this worker assembled.")
CONSUMER_LAG = Gauge("mobstream_consumer_lag_messages", "Messages behind the partition's high watermark.",
                     ["partition"])
EVENT_TIME = Gauge("mobstream_event_time_seconds", "Max event time seen on the partition (epoch s).", ["partition"])
FORECASTS = Counter("mobstream_forecasts_total", "Cell forecasts emitted to the flow-forecasts topic.")
EMBEDDINGS = Counter("mobstream_embeddings_total", "User embeddings emitted to the user-embeddings topic.")
INFERENCE_SECONDS = Histogram("mobstream_inference_seconds", "Wall time of one model call (all cells or users of a slot).",
                              ["model"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
FORECAST_MAE = Gauge("mobstream_forecast_mae", "Mean absolute error of the last closed slot's forecast made `horizon` "
                     "slots before, over cells and channels, beside the persistence baseline's.", ["model", "horizon"])
FORECAST_RMSE = Gauge("mobstream_forecast_rmse", "Root mean squared error, as mobstream_forecast_mae.", ["model", "horizon"])
STATE_RELOADS = Counter("mobstream_state_reloads_total", "Partitions reloaded from Redis because another owner "
                        "wrote them since this worker loaded them (a rebalance).")
REPARTITIONED = Counter("mobstream_repartitioned_pings_total", "Pings forwarded to the partition that owns their "
                        "user (they arrived on another one: unkeyed or non-murmur2 producers).")
FLOWS = Counter("mobstream_flows_total", "Cell flow records (actual occupancy, inflow, outflow) emitted to the flows topic.")
REDIS_UP = Gauge("mobstream_redis_up", "0 while the worker's last Redis call failed (it retries the batch), else 1.")
MODEL_LOADED = Gauge("mobstream_model_loaded", "1 when the model's checkpoint is loaded, 0 when it is off.", ["model"])


def serve(port: int) -> None:
    """Expose every metric on http://0.0.0.0:port/metrics (0 = off)."""
    if port:
        start_http_server(port)
