"""The worker's app recovers every table in bulk, with the cluster's credentials."""

from __future__ import annotations

from bando.settings import Settings
from streams.app import create_app
from streams.bulkstore import BulkMemoryStore, BulkRecovery


def test_tables_are_bulk_loaded_with_the_sasl_credentials(tmp_path):
    settings = Settings.from_env(env={}, kafka_bootstrap="127.0.0.1:9", kafka_username="worker",
                                 kafka_password="secret", data_dir=str(tmp_path))
    app = create_app(settings)
    assert isinstance(app.tables.recovery, BulkRecovery)
    assert set(app.tables) == {"seen", "units", "facts", "clock", "ranked"}
    for table in app.tables.values():
        store = table.data
        assert isinstance(store, BulkMemoryStore)
        assert store.loader == {
            "bootstrap_servers": "127.0.0.1:9", "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "worker",
            "sasl_plain_password": "secret"}
        assert "secret" not in repr(store) and "secret" not in store.label
