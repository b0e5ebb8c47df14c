"""The registry: who is regulated, where, by whom, under which limits, with which devices."""
