"""The Iceberg lake: catalog, table definitions, exactly-once writer, maintenance."""
