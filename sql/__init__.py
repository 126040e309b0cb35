"""The warehouse SQL, shipped inside the package as `ecm_pipeline.sql` (read with importlib.resources)."""
