from ecm_pipeline.cli import entry

entry()
