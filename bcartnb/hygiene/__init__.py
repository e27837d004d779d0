"""List hygiene: who must not be mailed again, found from bounces, complaints and unsubscribes.

The suppression list itself lives in the ledger (:mod:`bcartnb.ledger.suppressions`); this
package holds what feeds it and what it feeds:

======================================  ====================================================
:mod:`~bcartnb.hygiene.sources`         bounce mailboxes, read-only: Maildir, mbox, IMAP
:mod:`~bcartnb.hygiene.bounces`         one mail read: bounce (hard/soft), complaint (ARF),
                                        mailto unsubscribe, or nothing
:mod:`~bcartnb.hygiene.mailparse`       the standard library's parse of a mail, without a
                                        regular expression compiled per multipart
:mod:`~bcartnb.hygiene.notice`          that mail parsed once: its parts, text, headers and
                                        attached original, each read once
:mod:`~bcartnb.hygiene.matching`        our Message-IDs and VERP return paths, resolved to
                                        the campaign mail through the ledger
:mod:`~bcartnb.hygiene.scan`            ``bcartnb bounces scan``: all of the above, recorded
                                        once per event
:mod:`~bcartnb.hygiene.report`          the list-hygiene notebook's report
:mod:`~bcartnb.hygiene.export`          the CSV that writes the list back to B-Cart
:mod:`~bcartnb.hygiene.writeback`       which B-Cart member each listed address is (the
                                        push and the CSV share it)
======================================  ====================================================

The one-click unsubscribe server lives here too. What a mail carries that names it (the
signed unsubscribe token, the VERP return path, the Message-ID's tokens) is not here but in
:mod:`bcartnb.mailtokens`, a layer lower, because compose and delivery write it.
"""

from __future__ import annotations
