"""What a job's reports say (coverage, JUnit, SARIF) and how long the master keeps them."""
