"""Tests of the process runtime and shared-memory transport."""
