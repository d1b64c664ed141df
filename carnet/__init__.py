"""carnet: secure health messaging on email standards.

An S/MIME mail domain with its own certificate authority and certificate directory, an MTA that signs and
verifies every message, an IMAP server and a webmail, in one package. The components are the subpackages
(``carnet.pki``, ``carnet.directory``, ``carnet.mta``, ``carnet.mailbox``, …); shared plumbing sits in the root
modules: :mod:`carnet.config` (settings), :mod:`carnet.db` (engine, migrations), :mod:`carnet.cli` (command line).
"""

__version__ = "0.1.0"
