"""The worker's app recovers every table in bulk, with the cluster's credentials; its ranker
connects with them too."""

from __future__ import annotations

from bando.settings import Settings
from streams.app import create_app
from streams.bulkstore import BulkMemoryStore, BulkRecovery


def test_tables_are_bulk_loaded_with_the_sasl_credentials(tmp_path):
    settings = Settings.from_env(env={}, kafka_bootstrap="127.0.0.1:9", kafka_username="worker",
                                 kafka_password="secret", data_dir=str(tmp_path))
    app = create_app(settings)
    assert isinstance(app.tables.recovery, BulkRecovery)
    # the ranker's state is its own (streams.rank_service), not a faust table
    assert set(app.tables) == {"seen", "units", "facts", "clock"}
    for table in app.tables.values():
        store = table.data
        assert isinstance(store, BulkMemoryStore)
        assert store.loader == {
            "bootstrap_servers": "127.0.0.1:9", "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "worker",
            "sasl_plain_password": "secret"}
        assert "secret" not in repr(store) and "secret" not in store.label
    assert app.bando_ranker._connect == store.loader  # the ranker's consumer and producer


def test_ranker_off_leaves_ranking_to_a_ranker_process(tmp_path):
    settings = Settings.from_env(env={"BANDO_RANKER": "off"}, data_dir=str(tmp_path))
    app = create_app(settings)
    assert not hasattr(app, "bando_ranker")


def test_the_worker_consumer_asks_the_broker_to_hold_a_fetch_briefly(tmp_path):
    """faust's 1.5 s ``fetch_max_wait_ms`` stalled every partition behind a fetch of idle ones
    (streams.batch_consumer.BatchConsumerThread)."""
    import asyncio

    from streams.batch_consumer import FETCH_MAX_WAIT_MS

    async def build() -> int:
        settings = Settings.from_env(env={}, kafka_bootstrap="127.0.0.1:9",
                                     data_dir=str(tmp_path))
        app = create_app(settings)
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        return consumer._fetch_max_wait_ms

    assert asyncio.run(build()) == FETCH_MAX_WAIT_MS == 50
