"""The plan: Terraform read offline, the timing model, the rules a plan must pass (no process runs)."""
