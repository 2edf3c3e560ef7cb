"""The pipeline file (`.namaskah-ci.yml`) to one typed model per revision: safe YAML, schema, model,
inputs, schedules, reading it at a revision, the builders it defined."""
