"""The explorer's modal screens, one per module (imported where they are opened)."""
