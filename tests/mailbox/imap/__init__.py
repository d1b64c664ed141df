"""Tests of carnet's IMAP server (carnet.mailbox.imap), one module per command family, with real clients."""
