"""Load test for the Namaskah verification service (the seed pipeline's performance baseline).

    locust -f locustfile.py --headless --host http://127.0.0.1:8000 -u 20 -r 5 -t 60s --csv reports/perf
    python scripts/check_performance_thresholds.py reports/perf_stats.csv   # p95 < 500 ms, errors < 5 %

Point --host only at a service you run yourself (loopback or your own staging).
Probe users hit the health endpoints; verification users send a code to a fresh
random phone number (so the per-number rate limit does not trip) and check a
wrong code, which the service must answer with 400.
"""

from __future__ import annotations

import random

from locust import HttpUser, between, task


def random_phone() -> str:
    return "+1555" + "".join(random.choice("0123456789") for _ in range(7))  # nosec B311 - test data only


class ProbeUser(HttpUser):
    """Liveness, readiness and diagnostics, as Render's probes and the deploy smoke tests do."""

    weight = 3
    wait_time = between(0.5, 1.5)

    @task(5)
    def liveness(self) -> None:
        self.client.get("/health")

    @task(3)
    def readiness(self) -> None:
        self.client.get("/api/v1/health")

    @task(1)
    def diagnostics(self) -> None:
        self.client.get("/api/diagnostics")


class VerificationUser(HttpUser):
    """Sends a verification, then checks a wrong code (expected: 400)."""

    weight = 1
    wait_time = between(1, 3)

    @task
    def send_and_check(self) -> None:
        created = self.client.post("/api/v1/verifications", json={"phone_number": random_phone()})
        if created.status_code != 201:
            return
        verification_id = created.json()["id"]
        with self.client.post(
            f"/api/v1/verifications/{verification_id}/check",
            json={"code": "000000"},
            name="/api/v1/verifications/[id]/check",
            catch_response=True,
        ) as response:
            if response.status_code in (200, 400):  # 200 when the random code happened to be 000000
                response.success()
            else:
                response.failure(f"unexpected status {response.status_code}")
