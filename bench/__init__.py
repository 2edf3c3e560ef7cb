"""The pipeline benchmark (pipeline_bench.py) and its pure helpers."""
