"""carnet's MTA: SMTP listeners, the S/MIME gateway, the delivery router, the outbound queue, DSN and MDN.

Implemented, one module per concern, in the order a message goes through them:

- :mod:`.listeners`, :mod:`.session` — SMTP (RFC 5321) on aiosmtpd: submission with STARTTLS (RFC 3207, RFC 6409)
  and implicit TLS (RFC 8314), AUTH PLAIN/LOGIN only under TLS (RFC 4954, RFC 4616) against the directory; the relay
  listener of the trust space (mutual TLS, client certificates of the trust space's CAs only); trusted networks
  bound to an organisation or app mailbox. Extensions: PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME
  (RFC 6152), SMTPUTF8 (RFC 6531), ENHANCEDSTATUSCODES (RFC 2034, RFC 3463), DSN (RFC 3461), CHUNKING (RFC 3030);
- :mod:`.limits` — bare CR/LF refused (RFC 5321 §2.3.8, SMTP smuggling), size, header, MIME depth and parts;
- :mod:`.gateway` — sign on behalf, verify, decrypt, encrypt (RFC 8551, RFC 5652, RFC 5083/5084);
- :mod:`.headers` — ``Carnet-Signature``, ``X-MSS-NIL``, ``X-MSS-MES``, ``Received`` (RFC 5321 §4.4);
- :mod:`.policy` — inbound S/MIME policy per status, the MSSanté patient rules;
- :mod:`.router` — local mailbox, brick or queue, all committed in one transaction before ``250`` (group commit);
- :mod:`.bricks` — the extension point of the DMP, agenda and catalogue;
- :mod:`.queue`, :mod:`.delivery` — the outbound queue in the database (``FOR UPDATE SKIP LOCKED``), delivery over
  mutually authenticated TLS to the trust space's relays, static transport map or DNS MX (RFC 5321 §5.1, RFC 7505,
  dnspython), retries with back-off;
- :mod:`.dsn` (RFC 3464, RFC 6522), :mod:`.mdn` (RFC 8098);
- :mod:`.store`, :mod:`.models` — the MTA's tables (queue, correspondents).

Limits and deliberate omissions: no plaintext SMTP towards peers inside the trust space, ever (no opportunistic
fallback); no open relay (relay only for trust-space operators and only to our domains; submission only to our
domains and the trust space); no BINARYMIME (CHUNKING carries 7bit/8bit data only); no VRFY/EXPN (252/502); no
``postmaster`` mailbox (RFC 5321 §4.5.1) unless the directory has one; DATA lines longer than 998 octets are accepted
as they are; a message larger than the SIZE limit sent without SIZE is answered 552 and the connection closed (its
end cannot be found without reading it); the revocation status of peers' TLS client certificates is not checked
(their S/MIME signatures' is); SRS, DKIM, SPF and DMARC are not used (the trust space authenticates peers by TLS and
messages by S/MIME).
"""
