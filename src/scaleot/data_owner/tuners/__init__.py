"""Per-method packages, laid out like peft's ``tuners/<method>/`` (config + layer + model)."""
