"""test/smtp_sink.py: an aiosmtpd handler that stores every message it
receives, for test/shell/smtp_outbox.sh.

    PYTHONPATH=test /usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:PORT \\
        -c smtp_sink.Sink DIR [DELAY_SECONDS]

Each message accepted becomes two files in DIR: NAME.json, the envelope
({"mail_from": ..., "rcpt_tos": [...]}), then NAME.eml, the message as
received (after SMTP's dot-unstuffing).  Both are written under a temporary
name and renamed, so a reader that counts *.eml never sees half a message.
NAME sorts in the order of arrival and stays unique across restarts of the
sink on the same DIR.  DELAY_SECONDS (default 0) is waited before each
message is stored and accepted, to make a run last long enough for a test
to interrupt it.

A recipient whose local part starts with "reject" is refused with a
permanent reply, "550 5.1.1 mailbox unavailable" (for the daemon's refused
count, test/shell/worker_metrics.sh).
"""
import asyncio
import itertools
import json
import os
import time


class Sink:
    def __init__(self, directory, delay=0.0):
        self.directory = directory
        self.delay = delay
        self.counter = itertools.count()
        os.makedirs(directory, exist_ok=True)

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) not in (1, 2):
            parser.error("smtp_sink.Sink takes DIR [DELAY_SECONDS]")
        return cls(args[0], float(args[1]) if len(args) == 2 else 0.0)

    def _store(self, name, suffix, data):
        path = os.path.join(self.directory, name + suffix)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        name = "%020d-%d-%06d" % (time.time_ns(), os.getpid(), next(self.counter))
        self._store(name, ".json", json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
        }).encode())
        self._store(name, ".eml", envelope.original_content)
        return "250 OK stored as " + name
