"""Email: parsing, loop safety, threading, composing replies, the outbox, and the IMAP poller."""
