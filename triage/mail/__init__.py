"""Mail: bytes in (parsing, loop safety, storing and processing inbound mail, the IMAP poller) and
mail out (composing replies, the outbox)."""
