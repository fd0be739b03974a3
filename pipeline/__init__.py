"""fleetcare pipeline: landing MQTT messages in DuckDB, features, advice and CRM delivery."""
