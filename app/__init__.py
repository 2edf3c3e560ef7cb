"""Namaskah SMS verification service: the reference service the Namaskah CI pipeline tests and deploys.

The package is a FastAPI application (`app.main:app`) with one module per concern:
settings (`config`), database (`db`, `models`), Redis (`redis_client`), SMS delivery
(`sms`), rate limiting (`rate_limit`), verification codes (`codes`), the request and
response shapes (`schemas`), dependency probes (`probes`), error handlers (`errors`)
and the HTTP routes (`routes`). Importing it connects to nothing.
"""

__version__ = "1.0.0"
