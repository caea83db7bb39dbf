"""The admin API's handlers (functions/admin/main.py maps paths to them)."""
