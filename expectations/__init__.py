"""The Great Expectations suites, shipped inside the package as `ecm_pipeline.expectations`."""
