# Generated from proto/scop/v1 by client/python/generate_stubs.py; do not edit.
