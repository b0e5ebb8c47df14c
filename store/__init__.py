"""PostgreSQL/TimescaleDB storage: the one place SQL lives."""
