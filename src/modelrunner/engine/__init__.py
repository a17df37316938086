"""Submit (cache, single-flight), the run state machine, leases, dispatch and recovery."""
