"""Users, groups, tokens and permissions: who is asking, and what they may do."""
