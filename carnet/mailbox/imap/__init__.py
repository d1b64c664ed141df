"""carnet's IMAP server: IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) with extensions, on asyncio.

Implemented (module):

- RFC 9051 IMAP4rev2 and RFC 3501 IMAP4rev1, both served; rev2 behaviour after ``ENABLE IMAP4rev2``
  (:mod:`.server`, :mod:`.parser`, :mod:`.response`, one module per command family below)
- RFC 8314 implicit TLS port and RFC 9051 §6.2.1 STARTTLS (required before authentication: LOGINDISABLED)
  (:mod:`.server`, :mod:`.auth`)
- RFC 4616 SASL PLAIN, RFC 4959 SASL-IR, RFC 2971 ID (:mod:`.auth`)
- RFC 5161 ENABLE; RFC 6855 UTF8=ACCEPT; RFC 7162 CONDSTORE and QRESYNC (:mod:`.condstore`, :mod:`.select`,
  :mod:`.fetch`, :mod:`.store`, :mod:`.session`)
- RFC 2342 NAMESPACE, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE and CREATE-SPECIAL-USE,
  RFC 3348 CHILDREN, RFC 8438 STATUS=SIZE (:mod:`.list`)
- RFC 3691 UNSELECT (:mod:`.select`); RFC 4315 UIDPLUS (APPENDUID, COPYUID, UID EXPUNGE); RFC 6851 MOVE
  (:mod:`.copy`, :mod:`.store`)
- RFC 7888 LITERAL+ (and LITERAL-), RFC 7889 APPENDLIMIT (:mod:`.server`, :mod:`.append`)
- RFC 3516 BINARY (:mod:`.fetch`, :mod:`.append`)
- RFC 4731 ESEARCH, RFC 5182 SEARCHRES (:mod:`.search`)
- RFC 2177 IDLE (:mod:`.idle`); RFC 9208 QUOTA with the STORAGE resource (:mod:`.quota`)
- RFC 3501 §5.1.3 modified UTF-7 mailbox names for rev1 clients (:mod:`.utf7`)

Deliberate limitations:

- ``\\Recent`` is not kept (RFC 9051 removed it): RECENT is always 0, SEARCH RECENT / NEW match nothing.
- No MULTIAPPEND (RFC 3502), no NOTIFY (RFC 5465), no METADATA, no ACL, no COMPRESS, no shared or public
  namespaces, SASL PLAIN only (no SCRAM, no OAUTHBEARER yet), no SETQUOTA for users.
- SEARCH substrings are matched on the store's decoded text (case-insensitively); sequence numbers beyond EXISTS
  in FETCH/STORE/COPY are answered BAD rather than ignored; 8-bit text must be quoted or a literal, not an atom.
- FLAGS lists the system flags and common keywords, not every keyword in use (PERMANENTFLAGS has ``\\*``).
- INTERNALDATE is kept as an instant and answered in UTC.
- Updates from other processes need PostgreSQL (SQLite has no cross-process notification channel).
- The sequence-number map is loaded at the first command that needs it, not at SELECT (SELECT costs the same on
  1,000 or 100,000 messages).
"""

from carnet.mailbox.imap.server import ImapLimits, ImapServer, capabilities, start_imap, tls_context

__all__ = ["ImapLimits", "ImapServer", "capabilities", "start_imap", "tls_context"]
