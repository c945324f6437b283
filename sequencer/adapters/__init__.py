"""Adapters: the database, SMTP, IMAP, the terminal and the browser."""
