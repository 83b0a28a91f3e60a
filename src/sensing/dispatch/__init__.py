"""Dispatch: cases, routing and escalation, notifications (docs/dispatch.md)."""
