"""Podium: self-hosted model serving with the Databricks Model Serving API."""

__version__ = "0.1.0"
