"""Simulated ambient stations and CEMS outlets publishing realistic readings over MQTT."""
