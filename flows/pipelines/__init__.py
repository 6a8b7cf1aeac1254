"""Config-driven pipelines: ``eventlake aggregate`` flags and TOML pipeline files
made into flows over any JSON topic."""
