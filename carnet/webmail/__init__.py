"""The webmail: the patients' secure inbox in the browser (server-rendered, FastAPI + Jinja2).

Mounted by ``carnet serve`` under ``/webmail``. It reads through the message store (:mod:`carnet.mailbox`) of the
space being looked at, never by blob id; it sends through the MTA's router and gateway, as SMTP submission does.
"""
