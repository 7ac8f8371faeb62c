"""Helpdesk: tickets and their actions, staff users, API tokens and queue statistics."""
