"""GitHub: the signed webhook, its payloads and deliveries, pull requests, and the commit statuses posted back."""
