"""fleetcare flows: Prefect flows (thin shells over pipeline and models) and the CLI."""
