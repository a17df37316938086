"""Where attempts execute. A backend launches, observes and stops attempts; nothing more."""
