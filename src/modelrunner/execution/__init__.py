"""One attempt under the model contract: scratch folder, variables, progress, outputs."""
