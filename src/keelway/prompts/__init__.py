"""Prompt registry: versioned templates, labels, approvals and rendering."""
