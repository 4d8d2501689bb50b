"""Packages, versions, the publish pipeline, search and update checks."""
