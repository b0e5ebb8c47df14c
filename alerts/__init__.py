"""The compliance engine: scheduled rules, episodes, reminders, escalation, notifications."""
