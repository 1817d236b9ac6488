"""Scoring: pixel metrics, the simulator ceiling and rollouts by lead time."""
