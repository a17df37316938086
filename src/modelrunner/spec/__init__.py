"""What users write: the workspace, model specs, parameters; loading and validation."""
