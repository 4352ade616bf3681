"""The static HTML report and its figures."""
