"""Thin glue between the datareduce core and host training frameworks (one module per host)."""
