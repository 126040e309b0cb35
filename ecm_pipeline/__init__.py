"""ECM Pipeline: stuck remittance order triage on Dagster."""
